"""What a training run depends on: the artifacts it reads (the stores behind each batch key, the CLIP
artifacts the chosen adapter needs) and its settings in effect (after the training preset)."""

from __future__ import annotations

from pathlib import Path

from depthcore.data.training import store_of
from depthcore.losses import build_loss
from depthcore.models import adapters  # noqa: F401  (the adapters' settings classes, whose methods run here)
from depthcore.paths import Paths


def store_paths(paths: Paths) -> dict[str, Path]:
    """Store name (as in :func:`depthcore.data.training.store_of`) -> path."""
    return {
        "dataset": paths.dataset,
        "features": paths.clip_features,
        "zeroshot": paths.zeroshot,
        "segments": paths.segments,
        "pairs": paths.pairs,
    }


def needed_inputs(params, paths: Paths) -> list[Path]:
    """The artifacts the chosen adapter and loss read (what training and evaluation depend on).

    What an adapter reads is said by its settings class (defined with the adapter)."""
    cfg = params.adapter_config
    keys = cfg.batch_keys() + build_loss(params.loss, smoothness=1.0, ssl=params.ssl).fields
    stores = store_paths(paths)
    needed = [paths.dataset, paths.split, *(stores[store_of(key)] for key in keys)]
    if cfg.needs_head():
        needed.append(paths.clip_head)
    if cfg.needs_shallow():
        needed.append(paths.clip_shallow)
    return sorted(set(needed))


def training_settings(params, phase: str = ""):
    """The train section in effect for ``phase``: the chosen adapter's published settings under
    ``train.preset: published``, the values of params.yaml under ``custom``; capped by ``train.max_epochs``."""
    train = params.train
    if train.preset == "published":
        train = train.model_copy(update=params.adapter_config.published_training(phase))
    if train.max_epochs is not None and train.epochs > train.max_epochs:
        train = train.model_copy(update={"epochs": train.max_epochs})
    return train


def run_settings(params) -> dict:
    """Every setting a training run depends on, resolved (what the train stage's output is a function of,
    besides the input artifacts and the code)."""
    cfg = params.adapter_config
    return {
        "adapter": params.adapter,
        "adapter_config": cfg.to_dict(),
        "loss": params.loss,
        "ssl": {"alpha": params.ssl.alpha, "smoothness": params.ssl.smoothness} if params.loss == "ssl" else None,
        "seed": params.seed,
        "training": {phase: training_settings(params, phase).to_dict() for phase in cfg.phases()},
        "eval": {k: v for k, v in params.eval.to_dict().items() if k != "figure_images"},
    }
