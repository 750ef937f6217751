"""The training loop of an adapter on cached features, readable top to bottom.

1. seed everything; pick the device (CUDA when available; AMP there only);
2. optimizer and per-step schedule from the (resolved) train section;
3. resume from the state file if it was written for the same work (the same ``resume_key``: the
   stage's input identity); otherwise start afresh and say why;
4. epoch 0: validate the untrained model (the first row of the curves);
5. per epoch: a seeded shuffle, seeded flips and colour jitter of the model's RGB input, forward, loss
   (a non-finite loss stops with :class:`TrainingError`, the last good state stays on disk), backward,
   step; validate on the val split with the shared metrics (and the photometric error for ssl); keep
   the best by val abs_rel (``select: val``) or the last epoch (``select: last``, e.g. without a val
   split); write the state file and the training curves (CSV, for ``dvc plots``);
6. write the kept checkpoint (safetensors + metadata, :mod:`depthcore.checkpoint`), delete the state.

The run is deterministic on CPU for a given seed, and a run killed after any epoch and restarted
ends with the same checkpoint bytes as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from depthcore.checkpoint import save_checkpoint
from depthcore.data.training import TrainingDataset
from depthcore.device import autocast, default_device
from depthcore.errors import DepthcoreError
from depthcore.io import atomic_path, write_csv_atomic
from depthcore.metrics import METRIC_NAMES
from depthcore.models.adapters import DepthAdapter
from depthcore.predict import evaluate_model, to_device, upsample_to

SELECTION_METRIC = "abs_rel"  # lower is better; always measured on the val split
CURVE_COLUMNS = ("phase", "epoch", "lr", "train_loss", *(f"val_{name}" for name in METRIC_NAMES), "val_photometric")


class TrainingError(DepthcoreError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss, an empty split); the message says what to change."""


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy's global generator."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_schedule(optimizer: torch.optim.Optimizer, cfg, steps_per_epoch: int):
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


def jitter_rgb(batch: dict[str, torch.Tensor], strength: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The batch with its ``rgb`` (the adapter's input) scaled by U(1 - strength, 1 + strength) per image and
    clipped to [0, 1]; the batch the loss reads keeps the original images."""
    if strength <= 0 or "rgb" not in batch:
        return batch
    rgb = batch["rgb"]
    scale = 1.0 + strength * (2.0 * torch.rand(rgb.shape[0], generator=generator) - 1.0)
    return batch | {"rgb": (rgb * scale.to(rgb)[:, None, None, None]).clamp(0.0, 1.0)}


def train(
    *,
    model: DepthAdapter,
    loss_fn: nn.Module,
    train_set: TrainingDataset,
    val_set: TrainingDataset,
    gt_depth,
    cfg,
    eval_cfg,
    seed: int,
    meta: Mapping[str, Any],
    checkpoint: Path | str,
    state: Path | str,
    resume_key: str | None,
    curves: Path | str | None = None,
    phase: str = "",
    earlier: list[dict[str, Any]] | None = None,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` and write the kept checkpoint to ``checkpoint``; returns its summary.

    cfg / eval_cfg: the resolved train section and the eval section; meta: what the checkpoint records about
    the model (adapter name and settings, context, features identity, loss); ``val_set`` must be loaded with
    ``with_flipped=True`` (validation predicts like evaluation); gt_depth: the dataset Store (``depth_eval``).
    The state file ``state`` is resumed only when written with the same ``resume_key``. ``phase`` labels the
    curve rows, after the rows ``earlier`` of previous phases. ``on_epoch_end(epoch, row)`` is called after
    each epoch's state is saved.
    """
    if len(train_set) == 0:
        raise TrainingError("the train split is empty: check data.val_fraction and the dataset's images")
    if len(val_set) == 0 and cfg.select == "val":
        raise TrainingError("the val split is empty but train.select is val: set data.val_fraction > 0")
    seed_everything(seed)
    device = default_device(device)
    use_amp = cfg.amp and device.type == "cuda"
    model = model.to(device)
    meta = dict(meta) | {"seed": seed, "train": cfg.to_dict()}
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError(f"adapter {meta.get('adapter')!r} has no trainable parameters")
    optimizer = make_optimizer(params, cfg)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    schedule = make_schedule(optimizer, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, num_workers=num_workers)
    earlier = list(earlier or [])

    def validate() -> dict[str, Any]:
        if len(val_set) == 0:
            return {}
        val = evaluate_model(model, val_loader, gt_depth, eval_cfg=eval_cfg, device=device, amp=use_amp)[0]
        row = {f"val_{name}": val[name] for name in METRIC_NAMES}
        if hasattr(loss_fn, "photometric_term"):
            row["val_photometric"] = photometric_on(model, loss_fn, val_loader, train_set.image_size, device)
        return row

    def record(epoch: int, train_loss: float | None, val: dict[str, Any]) -> dict[str, Any]:
        row = {"phase": phase, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss}
        history.append(row | val)
        return row

    state = Path(state)
    saved = _load_state(state, resume_key)
    if saved is not None:
        model.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(saved["rng"])
        history, best, start_epoch = saved["history"], saved["best"], int(saved["epoch"])
        print(f"{checkpoint}: resuming after epoch {start_epoch}")
    else:
        history, start_epoch = [], 0
        val = validate()  # epoch 0: the untrained model
        record(0, None, val)
        best = {
            "epoch": 0,
            "score": _score(val),
            "state_dict": _cpu(model),
            "val": val,
        }

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        train_set.set_epoch(epoch)
        loader = DataLoader(
            train_set,
            batch_size=cfg.batch_size,
            sampler=epoch_order(len(train_set), seed, epoch),
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        jitter = torch.Generator().manual_seed(seed * 100_003 + epoch + 1)
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress, leave=False)
        for step, batch in enumerate(bar):
            batch = to_device(batch, device)
            with autocast(device, use_amp):
                pred = model(jitter_rgb(batch, cfg.color_jitter, jitter))
            loss = loss_fn(upsample_to(pred.float(), train_set.image_size), batch)
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

        val = validate()
        row = record(epoch + 1, total / max(count, 1), val)
        score = _score(val)
        if cfg.select == "last" or score < best["score"]:
            best = {"epoch": epoch + 1, "score": score, "state_dict": _cpu(model), "val": val}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in val.items() if k in ("val_abs_rel", "val_d1", "val_photometric"))
        print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} {shown} (kept {best['epoch']})")
        saved = {
            "resume_key": resume_key,
            "epoch": epoch + 1,
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": torch.get_rng_state(),
            "history": history,
            "best": best,
        }
        with atomic_path(state) as tmp:
            torch.save(saved, tmp)
        if curves is not None:
            write_curves(curves, earlier + history)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)

    summary = {"best_epoch": best["epoch"], "epochs": cfg.epochs, **best["val"]}
    save_checkpoint(checkpoint, state_dict=best["state_dict"], meta=meta | {"history": earlier + history, **summary})
    if curves is not None:
        write_curves(curves, earlier + history)
    state.unlink(missing_ok=True)
    return summary | {"history": history}


@torch.no_grad()
def photometric_on(model: nn.Module, loss_fn: nn.Module, loader: DataLoader, size, device: torch.device) -> float:
    """Mean photometric error of ``model``'s predictions over ``loader`` (self-supervised validation), over the
    batches with a valid pixel; NaN if none has one."""
    was_training = model.training
    model.eval()
    terms = []
    for batch in loader:
        batch = to_device(batch, device)
        term = loss_fn.photometric_term(upsample_to(model(batch).float(), size), batch).item()
        if not math.isnan(term):
            terms.append((term, len(batch["index"])))
    model.train(was_training)
    return sum(t * n for t, n in terms) / sum(n for _, n in terms) if terms else math.nan


def _score(val: Mapping[str, Any]) -> float:
    """The selection score of a validation row (lower is better); inf when undefined (no val split, or a
    model whose predictions have no valid pixel: NaN metrics)."""
    score = val.get(f"val_{SELECTION_METRIC}", math.nan)
    return math.inf if math.isnan(score) else score


def _cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _load_state(state: Path, resume_key: str | None) -> dict[str, Any] | None:
    """The saved training state if it belongs to the same work, else None (saying why)."""
    if not state.exists():
        return None
    try:
        saved = torch.load(state, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file: start afresh, like a changed one
        saved = None
    if resume_key is not None and saved is not None and saved.get("resume_key") == resume_key:
        return saved
    if saved is None:
        reason = "it cannot be read"
    else:
        reason = "no input identity to check it against" if resume_key is None else "its inputs changed"
    print(f"{state}: starting afresh ({reason})")
    return None
