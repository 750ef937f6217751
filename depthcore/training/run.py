"""A training run, defined once: the adapter's context, the loss and the two splits, then the adapter's
training phases in order, each by :func:`depthcore.training.loop.train`. Shared by the train stage, the
paper grid, the tests and the benchmarks.

The phases are the adapter's own (:meth:`AdapterConfig.phases`): each builds the model it trains (seeded by
the run's ``init`` stream at the phase's index), which takes what it keeps from the previous phase's model
(:meth:`DepthAdapter.begin_phase`); every phase but the last writes its kept checkpoint next to the model, so
a rerun of the same work skips a finished phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depthcore.artifacts import load_head, load_shallow
from depthcore.config.paths import Paths
from depthcore.data.batch import loader_keys, store_paths
from depthcore.data.samples import TrainingDataset
from depthcore.data.splits import read_split, split_indices
from depthcore.data.store import Store
from depthcore.device import loader_workers
from depthcore.features.live import LiveFeatures
from depthcore.io import write_json_atomic
from depthcore.losses.registry import build_loss
from depthcore.models.adapters.base import AdapterContext, DepthAdapter, Phase
from depthcore.models.adapters.registry import build_adapter
from depthcore.seeding import seed_global
from depthcore.training.checkpoint import CheckpointError, feature_identity, input_identity, load_checkpoint
from depthcore.training.loop import Job, Outputs, train
from depthcore.training.recipes import recipe_record
from depthcore.training.settings import is_live, loss_smoothness, training_settings


@dataclass
class Run:
    """What every phase of a run shares: the adapter's context, the loss, the splits, the checkpoint metadata."""

    context: AdapterContext
    loss: Any
    train_set: TrainingDataset
    val_set: TrainingDataset
    meta: dict[str, Any]
    features: LiveFeatures | None = None  # params features: live (the backbone run per batch); None: cached


def adapter_context(params, paths: Paths, features: dict[str, Any]) -> AdapterContext:
    """What the chosen adapter is built from: the cached layers' shapes (``features``: the CLIP feature
    store's attrs, empty when the adapter reads no cached layer), and the head and the CLIP stem weights
    where it needs them."""
    cfg = params.adapter_config
    extras = {
        "head": load_head(paths.clip_head) if cfg.needs_head() else None,
        "shallow": load_shallow(paths.clip_shallow) if cfg.needs_shallow() else None,
    }
    return AdapterContext.from_features(features, **extras) if features else AdapterContext(**extras)


def build_run(params, paths: Paths) -> Run:
    """The context, loss and splits of the run ``params`` describes."""
    cfg = params.adapter_config
    live = LiveFeatures.from_weights(paths.backbone_weights, cfg.batch_keys()) if is_live(params) else None
    features = live.attrs if live else Store(paths.features).attrs if cfg.cached_layers() else {}
    context = adapter_context(params, paths, features)
    loss = build_loss(params.loss_name, cfg=params.loss_config, smoothness=loss_smoothness(params))
    dataset = Store(paths.dataset, required=("rgb", "depth"))
    codes = read_split(paths.split, dataset.shape("rgb")[0])
    keys = loader_keys(cfg.batch_keys() + loss.fields, live=live is not None)
    flip = params.train.flip
    stores = store_paths(paths)
    train_set = TrainingDataset(
        stores=stores,
        indices=split_indices(codes, "train"),
        keys=keys,
        flip="random" if flip == "random" else "none",
        seed=params.seed,
        with_flipped=flip == "average",  # both views: the mirror pass reads the mirrored image's features
        random_crop=live is not None,  # the references' random 416 x 544 crop, which cached features cannot have
    )
    val_set = TrainingDataset(stores=stores, indices=split_indices(codes, "val"), keys=keys, with_flipped=True)
    meta = {
        "adapter": params.adapter,
        "adapter_config": cfg.to_dict(),
        "loss": params.loss_name,
        "context": context.describe(),
        "features": feature_identity(features, cfg.cached_layers()),
        "feature_route": "live" if live else "cached",
        "inputs": input_identity(stores, cfg.batch_keys()),
    }
    return Run(context, loss, train_set, val_set, meta, live)


def build_phase_model(params, run: Run, index: int, phase: Phase) -> DepthAdapter:
    """The model phase ``index`` trains, initialised from the run's ``init`` stream at that index (so the first
    phase of a two-phase run starts as a one-phase run of the same model does)."""
    seed_global(params.seed, "init", index)
    return build_adapter(params.adapter, cfg=phase.config or params.adapter_config, context=run.context)


def train_model(params, paths: Paths, *, resume_key: str | None, progress: bool = True, **kwargs) -> dict:
    """The train stage: every phase of the chosen adapter, then the checkpoint, ``metrics/train.json`` and the
    curves. ``kwargs`` go to :func:`depthcore.training.loop.train` (e.g. ``on_epoch_end``)."""
    run = build_run(params, paths)
    phases = params.adapter_config.phases()
    print(
        f"training {params.adapter} with {params.loss_name} on {len(run.train_set)} images, validating on "
        f"{len(run.val_set)}; phases: {[p.name or 'whole model' for p in phases]}"
    )
    previous: DepthAdapter | None = None
    earlier: list[dict[str, Any]] = []
    for index, phase in enumerate(phases):
        last = index == len(phases) - 1
        model = build_phase_model(params, run, index, phase)
        model.begin_phase(phase.name, previous)
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"phase {phase.name or 'whole model'}: {n_params} trainable parameters")
        checkpoint = paths.model if last else paths.phase_model(phase.name)
        key = None if resume_key is None else f"{resume_key}:{phase.name}"
        settings = training_settings(params, phase.name, train_images=len(run.train_set))
        length = recipe_record(params, settings, train_images=len(run.train_set))
        print(f"phase {phase.name or 'whole model'}: {settings.epochs} epochs x {length['steps_per_epoch']} steps")
        job = Job(
            model=model,
            loss=run.loss,
            train_set=run.train_set,
            val_set=run.val_set,
            settings=settings,
            seed=params.seed,
            meta=run.meta | {"length": length} | ({} if last else {"resume_key": key}),  # resume_key: a finished phase
            phase=phase.name,
            phase_index=index,
            num_workers=loader_workers(params.runtime.num_workers),
            features=run.features,
        )
        if last or not _finished(checkpoint, key):
            out = Outputs(checkpoint, paths.resume_state, paths.train_curves, earlier)
            summary = train(job, out, resume_key=key, progress=progress, **kwargs)
        if not last:  # the next phase starts from this one's kept epoch
            meta, state = load_checkpoint(checkpoint)
            model.load_state_dict(state)
            earlier, previous = meta["history"], model
    for phase in phases[:-1]:
        paths.phase_model(phase.name).unlink(missing_ok=True)
    metrics = {k: v for k, v in summary.items() if k != "history"} | length
    write_json_atomic(paths.train_metrics, metrics)
    return metrics


def _finished(checkpoint: Path, key: str | None) -> bool:
    """Whether ``checkpoint`` holds the finished phase of the same work."""
    if key is None or not checkpoint.exists():
        return False
    try:
        return load_checkpoint(checkpoint)[0].get("resume_key") == key
    except CheckpointError:
        return False
