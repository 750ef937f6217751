"""What a training run depends on, defined once: the artifacts it reads, the params keys its output is a
function of, and the code of its adapter and loss.

The ``train_inputs`` stage writes all three into ``data/train_inputs.json`` (DVC hashes of the artifacts, the
keys' values, the content hashes of the two plugins' code); ``train`` and ``evaluate`` depend on that file,
not on every store, param and plugin module. The paper grid declares the same keys (minus those a row sets
itself) and the same plugin files per row. So a store, a setting or another adapter's or loss's code the run
does not use never re-runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from depthcore.closure import REPO, code_closure, module_path
from depthcore.config.overrides import dotted_values
from depthcore.config.params import ADAM_OPTIMIZERS
from depthcore.config.paths import Paths
from depthcore.data.batch import loader_keys, store_of, store_paths
from depthcore.io import sha256_of
from depthcore.losses.registry import LOSSES
from depthcore.models.adapters.registry import ADAPTERS
from depthcore.training.schedules import FINAL_FRACTION_SCHEDULES, WARMUP_SCHEDULES
from depthcore.training.settings import is_live, loss_batch_keys, phase_settings

# train.* keys every run reads; the optimiser keys below only under ``preset: custom`` (under ``published`` the
# chosen adapter's ``presets.<adapter>`` sets them) and some only with the optimiser or schedule that uses them.
ALWAYS_TRAIN_KEYS = ("preset", "max_epochs", "select", "color_jitter", "flip", "amp", "grad_clip")
OPTIMISER_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "schedule")


def needed_inputs(params, paths: Paths) -> list[Path]:
    """The artifacts the chosen adapter and loss read (what training and evaluation depend on). With live features
    (params ``features: live``) the backbone's weights and settings (``fetch_backbone``'s folder and
    ``backbone.json``) instead of the features store."""
    cfg = params.adapter_config
    stores = store_paths(paths)
    needed = [paths.dataset, paths.split]
    keys = loader_keys(cfg.batch_keys() + loss_batch_keys(params), live=is_live(params))
    needed += [stores[store_of(key)] for key in keys]
    if is_live(params):
        needed += [paths.backbone_weights, paths.backbone_settings]
    if cfg.needs_head():
        needed.append(paths.clip_head)
    if cfg.needs_shallow():
        needed.append(paths.clip_shallow)
    return sorted(set(needed))


def run_keys(params) -> list[str]:
    """The dotted params keys (leaves) a training run's output is a function of, besides its input artifacts
    and its code: the seed, the adapter and loss with their sections, and the train keys in effect. Under a
    reference recipe (``train.preset: dinov2 | dinov3 | probe3d``) its ``recipes.<name>`` section sets the loss, the
    grad clip and the optimiser keys: ``loss`` and those train keys are not read."""
    recipe = params.recipe is not None
    keys = ["seed", "adapter"] + ([] if recipe else ["loss"]) + ["features"]
    keys += [f"adapters.{params.adapter}.{name}" for name in type(params.adapter_config).model_fields]
    keys += [f"losses.{params.loss_name}.{name}" for name in type(params.loss_config).model_fields]
    train = set(ALWAYS_TRAIN_KEYS) - ({"grad_clip"} if recipe else set())
    if params.train.preset == "custom":
        phases = phase_settings(params).values()
        train |= set(OPTIMISER_KEYS)
        train |= {"momentum"} if any(s.optimizer == "sgd" for s in phases) else set()
        train |= {"beta2"} if any(s.optimizer in ADAM_OPTIMIZERS for s in phases) else set()
        train |= {"step_epochs", "gamma"} if any(s.schedule == "step" for s in phases) else set()
        train |= {"warmup_epochs"} if any(s.schedule in WARMUP_SCHEDULES for s in phases) else set()
        train |= {"final_lr_fraction"} if any(s.schedule in FINAL_FRACTION_SCHEDULES for s in phases) else set()
        train |= {"smoothness"} if params.loss_config.uses_train_smoothness else set()
    keys += [f"train.{name}" for name in type(params.train).model_fields if name in train]
    if params.train.preset == "published":
        keys += sorted(f"presets.{params.adapter}.{leaf}" for leaf in _leaves(getattr(params.presets, params.adapter)))
    if recipe:
        keys += sorted(f"recipes.{params.train.preset}.{leaf}" for leaf in _leaves(params.recipe))
    return keys


def _leaves(section) -> list[str]:
    """The dotted leaf keys below a params section (``coarse.lr``, ...)."""
    leaves = []
    for name, value in section.model_dump().items():
        leaves += [f"{name}.{leaf}" for leaf in _leaves(getattr(section, name))] if isinstance(value, dict) else [name]
    return leaves


def plugin_files(params, *, loss: bool = True) -> list[str]:
    """The project files the chosen adapter's (and ``loss``: loss's) modules run (repository-relative, sorted)."""
    plugins = [(ADAPTERS, params.adapter)] + ([(LOSSES, params.loss_name)] if loss else [])
    files: set[str] = set()
    for registry, name in plugins:
        files |= code_closure(module_path(registry.get(name).module))
    return sorted(files)


def run_settings(params) -> dict[str, Any]:
    """Everything a training run depends on besides its input artifacts: the values of :func:`run_keys`, the
    train settings in effect per phase (for reading; a function of those values), and the content hash of every
    file of :func:`plugin_files`. Under a recipe the phases show the recipe (its length in epochs depends on the
    training set, known when the run starts)."""
    if params.recipe is not None:
        phases = {phase.name: params.recipe.to_dict() for phase in params.adapter_config.phases()}
    else:
        phases = {phase: settings.to_dict() for phase, settings in phase_settings(params).items()}
    return {
        "params": dotted_values(params, run_keys(params)),
        "phases": phases,
        "code": {f: sha256_of(REPO / f) for f in plugin_files(params)},
    }
