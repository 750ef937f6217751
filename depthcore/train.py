"""Supervised training of an adapter on cached features, and prediction with it.

Read top to bottom: checkpoints (self-describing, ``torch.load(weights_only=True)``), the
prediction geometry (shared with zero-shot: flip average, paste), validation, then :func:`train`:

1. seed everything; pick the device (CUDA when available; AMP there only);
2. optimizer and per-step schedule from ``TrainConfig``;
3. resume from the state file (``models/last.pt``) if it was written by the same run description;
4. per epoch: a seeded shuffle and seeded flips, forward, loss on the valid target pixels
   (a non-finite loss stops with :class:`TrainingError`, the last good state stays on disk),
   backward, step; validate on the val split with the shared metrics; keep the best by val abs_rel;
   write the state file and the training curves (CSV, for ``dvc plots``);
5. write the best checkpoint, delete the state file.

The run is deterministic on CPU for a given seed, and a run killed after any epoch and restarted
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from depthcore.config import AdaptersConfig, ConfigError, EvalConfig, TrainConfig, plain
from depthcore.data.store import ResumableStore, write_csv_atomic
from depthcore.data.training import TrainingDataset, mirror_batch
from depthcore.device import autocast, default_device
from depthcore.errors import DepthcoreError
from depthcore.geometry import NYU_HEIGHT, NYU_WIDTH, flip_average, paste_prediction
from depthcore.metrics import METRIC_NAMES, average, image_metrics
from depthcore.models.adapters import AdapterContext, DepthAdapter, build_adapter

CHECKPOINT_FORMAT = "depthcore-adapter-1"
SELECTION_METRIC = "abs_rel"  # lower is better; always measured on the val split
CURVE_COLUMNS = ("epoch", "lr", "train_loss", *(f"val_{name}" for name in METRIC_NAMES))


class TrainingError(DepthcoreError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says what to change."""


class CheckpointError(DepthcoreError, ValueError):
    """A checkpoint is unreadable, of another format or adapter, or does not fit the features."""


# --------------------------------------------------------------------------------------- checkpoints
def save_atomic(obj: Mapping[str, Any], path: Path | str) -> Path:
    """torch.save to ``path`` via a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(dict(obj), tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """A depthcore adapter checkpoint (weights_only load); CheckpointError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: run `dvc repro train` first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a loadable checkpoint ({exc}); rerun `dvc repro train`") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a depthcore adapter checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


def feature_identity(attrs: Mapping[str, Any], layers: tuple[str, ...]) -> dict[str, Any]:
    """What the features an adapter was trained on depend on (from clip.zarr attrs), for ``layers``."""
    keys = ("model", "weights", "weights_sha256", "crop", "normalisation")
    out = {key: attrs.get(key) for key in keys}
    out["layers"] = {name: attrs.get("layers", {}).get(name) for name in layers}
    return plain(out)


def build_from_checkpoint(
    ckpt: Mapping[str, Any], *, adapter: str | None = None, features_attrs: Mapping[str, Any] | None = None
) -> DepthAdapter:
    """The adapter stored in ``ckpt`` with its weights (strict).

    ``adapter``: the adapter the caller expects (params); ``features_attrs``: attrs of the clip.zarr
    the model will read. A checkpoint of another adapter, or trained on other features, is refused.
    """
    name = ckpt["adapter"]
    if adapter is not None and name != adapter:
        raise CheckpointError(
            f"the checkpoint holds adapter {name!r} but params ask for {adapter!r}: rerun `dvc repro train` "
            f"(or set adapter: {name})"
        )
    layers = tuple(ckpt["clip_layers"])
    if features_attrs is not None and layers:
        now = feature_identity(features_attrs, layers)
        if now != ckpt["features"]:
            diff = sorted(key for key in now if now[key] != ckpt["features"].get(key))
            raise CheckpointError(
                f"the checkpoint was trained on other CLIP features (differing: {diff}); its features: "
                f"{ckpt['features']}; the store's: {now}. Retrain with `dvc repro train`"
            )
    cfg = AdaptersConfig.from_params({name: ckpt["adapter_config"]}, prefix="adapters")
    model = build_adapter(name, cfg=cfg, context=AdapterContext.from_description(ckpt["context"]))
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit adapter {name!r}: {exc}") from exc
    return model


# ------------------------------------------------------------------------------------- prediction
def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def upsample_to(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B x 1 x h x w at a stride of the crop -> B x 1 x H x W (bilinear, align_corners=True as paste)."""
    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    return F.interpolate(pred, size=size, mode="bilinear", align_corners=True)


@torch.no_grad()
def predict_full(model: nn.Module, batch: dict[str, torch.Tensor], *, amp: bool = False) -> torch.Tensor:
    """Full-frame prediction B x 1 x 480 x 640 metres (0 outside the crop) for a batch loaded with
    ``with_flipped=True``: the prediction of the image and of its mirror image (flipped back) are
    averaged at the model's output stride, upsampled to the crop and pasted, as for zero-shot."""
    device = next(iter(batch.values())).device
    with autocast(device, amp):
        pred = model(batch).float()
        pred_mirrored = model(mirror_batch(batch)).float()
    return paste_prediction(flip_average(pred, pred_mirrored))


def iter_predictions(
    model: nn.Module, loader: DataLoader, *, device: torch.device, amp: bool = False, progress: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For each batch of ``loader`` (loaded with ``with_flipped=True``): its dataset rows (B,) and
    full-frame predictions B x 480 x 640 (metres, numpy), from :func:`predict_full` in eval mode."""
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(loader, desc="predict", unit="batch", disable=not progress, leave=False):
            indices = batch.pop("index").numpy()
            yield indices, predict_full(model, to_device(batch, device), amp=amp)[:, 0].cpu().numpy()
    finally:
        model.train(was_training)


def evaluate_model(
    model: nn.Module,
    loader: DataLoader,
    gt_depth,
    *,
    eval_cfg: EvalConfig,
    device: torch.device,
    amp: bool = False,
    progress: bool = False,
) -> tuple[dict[str, float], list[dict[str, float] | None]]:
    """Shared-protocol metrics of ``model`` over ``loader``'s images against ``gt_depth[index]``.

    gt_depth: (N, 480, 640) array-like (the dataset's ``depth_eval``)."""
    rows = []
    for indices, depth in iter_predictions(model, loader, device=device, amp=amp, progress=progress):
        for index, pred in zip(indices, depth, strict=True):
            rows.append(
                image_metrics(
                    np.asarray(gt_depth[int(index)]),
                    pred,
                    min_depth=eval_cfg.min_depth,
                    max_depth=eval_cfg.max_depth,
                    median_scaling=eval_cfg.median_scaling,
                )
            )
    return average(rows), rows


def predict_to_store(
    model: nn.Module,
    loader: DataLoader,
    out: Path | str,
    *,
    n_images: int,
    fingerprint: Mapping[str, Any],
    attrs: Mapping[str, Any],
    device: torch.device,
    progress: bool = True,
) -> Path:
    """Write ``out`` with ``depth`` (n_images, 480, 640) float32 metres: ``loader``'s images filled,
    0 elsewhere (atomic, like every store)."""
    store = ResumableStore(out, fingerprint={**fingerprint, "n": n_images})
    depth = store.array("depth", (n_images, NYU_HEIGHT, NYU_WIDTH), np.float32)
    for indices, preds in iter_predictions(model, loader, device=device, progress=progress):
        for index, pred in zip(indices, preds, strict=True):
            depth[int(index)] = pred
    store.mark_done(n_images)
    return store.commit(attrs)


# ---------------------------------------------------------------------------------------- training
def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy's global generator."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step LambdaLR: constant, cosine to 0 over all steps, or x gamma every step_epochs."""
    total = cfg.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        if cfg.schedule == "step":
            return cfg.gamma ** ((step // steps_per_epoch) // cfg.step_epochs)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of ``epoch`` (depends on seed and epoch only)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def write_curves(path: Path | str, history: list[dict[str, float]]) -> None:
    """Training curves as CSV (one row per epoch, columns CURVE_COLUMNS), written atomically."""
    write_csv_atomic(path, history, fieldnames=list(CURVE_COLUMNS))


def train(
    *,
    model: DepthAdapter,
    loss_fn: nn.Module,
    train_set: TrainingDataset,
    val_set: TrainingDataset,
    gt_depth,
    cfg: TrainConfig,
    eval_cfg: EvalConfig,
    seed: int,
    describe: Mapping[str, Any],
    checkpoint: Path | str,
    state: Path | str,
    curves: Path | str | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` and write the best-by-val checkpoint to ``checkpoint``; returns its summary.

    describe: what the checkpoint records about the run (adapter name and settings, loss, train
    settings, context, features identity, ...); it is also the resume fingerprint: the state file
    ``state`` is used only when it was written with the same description. ``val_set`` must be loaded
    with ``with_flipped=True`` (validation predicts like evaluation). ``gt_depth``: the dataset's
    ``depth_eval`` (N, 480, 640). ``on_epoch_end(epoch, row)`` is called after each epoch's state is saved.
    """
    if len(train_set) == 0:
        raise ConfigError("the train split is empty: the dataset has no training images")
    if len(val_set) == 0:
        raise ConfigError("the val split is empty: model selection needs val images (set data.val_fraction > 0)")
    seed_everything(seed)
    device = default_device(device)
    use_amp = cfg.amp and device.type == "cuda"
    model = model.to(device)
    describe = plain(dict(describe)) | {"seed": seed, "train": cfg.to_dict()}
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"adapter {describe.get('adapter')!r} has no trainable parameters")
    optimizer = make_optimizer(params, cfg)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    schedule = make_schedule(optimizer, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"epoch": -1, "score": math.inf, "state_dict": None, "optimizer": None, "val": None}
    start_epoch = 0

    # Resume when a state file of this very run exists.
    state = Path(state)
    if state.exists():
        saved = torch.load(state, map_location="cpu", weights_only=True)
        if saved.get("describe") == describe:
            model.load_state_dict(saved["state_dict"])
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
            scaler.load_state_dict(saved["scaler"])
            torch.set_rng_state(saved["rng"])
            history, best, start_epoch = saved["history"], saved["best"], int(saved["epoch"])
            print(f"resuming from {state} after epoch {start_epoch}")
        else:
            print(f"{state} was written by another run description; starting afresh")

    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        train_set.set_epoch(epoch)
        loader = DataLoader(
            train_set,
            batch_size=cfg.batch_size,
            sampler=epoch_order(len(train_set), seed, epoch),
            num_workers=cfg.num_workers,
            pin_memory=device.type == "cuda",
        )
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress, leave=False)
        for step, batch in enumerate(bar):
            batch = to_device(batch, device)
            with autocast(device, use_amp):
                pred = model(batch)
            pred = upsample_to(
                pred.float(), tuple(batch["depth"].shape[-2:]) if "depth" in batch else train_set.image_size
            )
            loss = loss_fn(pred, batch)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {step + 1}: training stopped. "
                    f"The last good state (after epoch {epoch}) is kept in {state}; lower train.lr, enable "
                    "train.grad_clip or check the inputs, then rerun (it resumes from there)"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            total += loss.item() * len(batch["index"])
            count += len(batch["index"])
            bar.set_postfix(loss=f"{loss.item():.4f}")

        val, _rows = evaluate_model(model, val_loader, gt_depth, eval_cfg=eval_cfg, device=device, amp=use_amp)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": total / max(count, 1)}
        row |= {f"val_{name}": val[name] for name in METRIC_NAMES}
        history.append(row)
        if val[SELECTION_METRIC] < best["score"]:
            best = {
                "epoch": epoch + 1,
                "score": val[SELECTION_METRIC],
                "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "val": val,
            }
        print(
            f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f}, val abs_rel "
            f"{val['abs_rel']:.4f}, rmse {val['rmse']:.3f}, d1 {val['d1']:.3f} (best epoch {best['epoch']})"
        )
        save_atomic(
            {
                "describe": describe,
                "epoch": epoch + 1,
                "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": torch.get_rng_state(),
                "history": history,
                "best": best,
            },
            state,
        )
        if curves is not None:
            write_curves(curves, history)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)

    summary = {
        "best_epoch": best["epoch"],
        "epochs": cfg.epochs,
        **{f"val_{name}": value for name, value in best["val"].items()},
    }
    save_atomic(
        {
            "format": CHECKPOINT_FORMAT,
            **describe,
            "state_dict": best["state_dict"],
            "optimizer": best["optimizer"],
            "epoch": best["epoch"],
            "val": best["val"],
            "history": history,
        },
        checkpoint,
    )
    if curves is not None:
        write_curves(curves, history)
    state.unlink(missing_ok=True)
    return summary
