"""Wiring of a training run, defined once: which stores an adapter reads, the model, loss and datasets,
then the train and evaluate steps. Shared by the stages, the tests and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from depthcore.checkpoint import CheckpointError, build_from_checkpoint, feature_identity, load_checkpoint
from depthcore.data.splits import read_split, split_indices
from depthcore.data.store import Store
from depthcore.data.training import TrainingDataset
from depthcore.device import default_device
from depthcore.evaluation import write_report
from depthcore.geometry import DEPTHCLIP_CROP
from depthcore.inputs import store_paths, training_settings
from depthcore.io import write_json_atomic
from depthcore.losses import build_loss
from depthcore.models.adapters import AdapterContext, DepthAdapter, build_adapter
from depthcore.models.clip_shallow import load_shallow
from depthcore.models.depthclip import load_head
from depthcore.params import Params
from depthcore.paths import Paths
from depthcore.predict import predict_to_store
from depthcore.train import seed_everything, train


def adapter_context(params: Params, paths: Paths, features: dict[str, Any]) -> AdapterContext:
    """What the chosen adapter is built from: the cached layers' shapes (``features``: the CLIP feature
    store's attrs, empty when the adapter reads no cached layer), and the head and the CLIP stem weights
    where it needs them."""
    cfg = params.adapter_config
    extras = {
        "head": load_head(paths.clip_head) if cfg.needs_head() else None,
        "shallow": load_shallow(paths.clip_shallow) if cfg.needs_shallow() else None,
    }
    return AdapterContext.from_features(features, **extras) if features else AdapterContext(**extras)


@dataclass
class Training:
    """Everything :func:`depthcore.train.train` needs for one run."""

    model: DepthAdapter
    context: AdapterContext
    loss_fn: Any
    train_set: TrainingDataset
    val_set: TrainingDataset
    dataset: Store
    meta: dict[str, Any]


def build_training(params: Params, paths: Paths) -> Training:
    """The model (seeded by ``params.seed``), loss and datasets of the run ``params`` describes."""
    cfg = params.adapter_config
    features = Store(paths.clip_features).attrs if cfg.cached_layers() else {}
    context = adapter_context(params, paths, features)
    seed_everything(params.seed)
    model = build_adapter(params.adapter, cfg=cfg, context=context)
    smoothness = max(training_settings(params, phase).smoothness for phase in cfg.phases())
    loss_fn = build_loss(params.loss, smoothness=smoothness, ssl=params.ssl)
    dataset = Store(paths.dataset, required=("rgb", "depth_eval"))
    codes = read_split(paths.split, dataset.shape("rgb")[0])
    stores = store_paths(paths)
    train_set = TrainingDataset(
        stores=stores,
        indices=split_indices(codes, "train"),
        keys=model.batch_keys() + loss_fn.fields,
        flip="random" if params.train.flip else "none",
        seed=params.seed,
    )
    val_keys = model.batch_keys() + (loss_fn.fields if params.loss == "ssl" else ())
    val_set = TrainingDataset(stores=stores, indices=split_indices(codes, "val"), keys=val_keys, with_flipped=True)
    meta = {
        "adapter": params.adapter,
        "adapter_config": cfg.to_dict(),
        "loss": params.loss,
        "context": context.describe(),
        "features": feature_identity(features, cfg.cached_layers()),
    }
    return Training(model, context, loss_fn, train_set, val_set, dataset, meta)


def train_model(params: Params, paths: Paths, *, resume_key: str | None, progress: bool = True, **kwargs) -> dict:
    """The train stage: train (phase by phase for two-stage adapters), write the checkpoint,
    ``metrics/train.json`` and the curves.

    Two-stage training first trains the coarse part alone (a model built with ``mode: coarse``) into
    ``<model>.coarse.safetensors``, then loads it into the full model, freezes it and trains the rest; a
    rerun of the same work skips a finished first phase."""
    run = build_training(params, paths)
    cfg = params.adapter_config
    n_params = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    print(
        f"training {params.adapter} ({n_params} parameters) with {params.loss} on {len(run.train_set)} images, "
        f"validating on {len(run.val_set)}"
    )
    common = dict(
        loss_fn=run.loss_fn,
        train_set=run.train_set,
        val_set=run.val_set,
        gt_depth=run.dataset,
        eval_cfg=params.eval,
        seed=params.seed,
        curves=paths.train_curves,
        num_workers=params.runtime.num_workers,
        progress=progress,
        **kwargs,
    )
    earlier: list[dict[str, Any]] = []
    for phase in cfg.phases():
        settings = training_settings(params, phase)
        key = None if resume_key is None else f"{resume_key}:{phase}"
        if phase == "coarse":
            seed_everything(params.seed)  # the coarse net starts as in a coarse-only run
            coarse_cfg = cfg.model_copy(update={"mode": "coarse"})
            model = build_adapter(params.adapter, cfg=coarse_cfg, context=run.context)
            if not _finished(paths.coarse_model, key):
                train(
                    model=model,
                    cfg=settings,
                    meta=run.meta | {"resume_key": key},
                    checkpoint=paths.coarse_model,
                    state=paths.resume_state,
                    resume_key=key,
                    phase=phase,
                    earlier=earlier,
                    **common,
                )
            meta, state = load_checkpoint(paths.coarse_model)
            model.load_state_dict(state)
            run.model.coarse.load_state_dict(model.coarse.state_dict())
            run.model.freeze_coarse()
            earlier = meta["history"]
            continue
        summary = train(
            model=run.model,
            cfg=settings,
            meta=run.meta,
            checkpoint=paths.model,
            state=paths.resume_state,
            resume_key=key,
            phase=phase,
            earlier=earlier,
            **common,
        )
    paths.coarse_model.unlink(missing_ok=True)
    metrics = {k: v for k, v in summary.items() if k != "history"}
    write_json_atomic(paths.train_metrics, metrics)
    return metrics


def _finished(checkpoint: Path, key: str | None) -> bool:
    """Whether ``checkpoint`` holds the finished first phase of the same work."""
    if key is None or not checkpoint.exists():
        return False
    try:
        return load_checkpoint(checkpoint)[0].get("resume_key") == key
    except CheckpointError:
        return False


def evaluate_checkpoint(params: Params, paths: Paths, *, progress: bool = True) -> dict[str, Any]:
    """The evaluate stage: predict the test images with the checkpoint and write the report."""
    meta, state = load_checkpoint(paths.model)
    features = Store(paths.clip_features).attrs if meta["features"]["layers"] else None
    model = build_from_checkpoint(meta, state, adapter=params.adapter, features_attrs=features)
    dataset = Store(paths.dataset, required=("rgb", "depth_eval", "split", "scene"))
    test_set = TrainingDataset(
        stores=store_paths(paths),
        indices=split_indices(dataset.read("split"), "test"),
        keys=model.batch_keys(),
        with_flipped=True,
    )
    device = default_device()
    predict_to_store(
        model.to(device),
        DataLoader(test_set, batch_size=params.runtime.eval_batch_size, num_workers=params.runtime.num_workers),
        paths.predictions,
        n_images=dataset.shape("depth_eval")[0],
        attrs={"depth_unit": "m", "crop": list(DEPTHCLIP_CROP), "split": "test", "predictor": params.adapter},
        device=device,
        progress=progress,
    )
    predictions = Store(paths.predictions, required=("depth",))
    return write_report(
        predictions,
        dataset,
        cfg=params.eval,
        metrics_path=paths.eval_metrics,
        figure_path=paths.eval_figure,
        figure_columns=[(params.adapter, predictions)],
        per_image_path=paths.eval_per_image,
    )
