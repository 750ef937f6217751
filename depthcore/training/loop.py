"""The training loop of one phase of an adapter, readable top to bottom.

:func:`train` runs a :class:`Job` (the model, its loss, the two splits, the resolved train settings):

1. optimizer and per-step schedule from the train settings; the device (CUDA when available; AMP there only);
2. resume from the state file if it was written for the same work (the same ``resume_key``: the stage's
   input identity), else validate the untrained model (epoch 0, the first row of the curves);
3. per epoch (:func:`train_epoch`): a seeded shuffle, seeded flips and colour jitter of the model's RGB input,
   forward, loss (a non-finite loss stops with :class:`TrainingError`, the last good state stays on disk),
   backward, step; then :func:`validate` on the val split: the run's own loss on the flip-averaged prediction
   (``validation_error``: the masked error for supervised losses, the photometric error for ssl, so
   selection never reads ground truth the loss does not); keep the lowest (``select: val``) or the last epoch
   (``select: last``); save the state (:func:`save_state`: a CPU copy written by a background thread while the
   next epoch trains) and the training curves (CSV, for ``dvc plots``);
4. write the kept checkpoint (safetensors + metadata, :mod:`depthcore.training.checkpoint`), delete the state.

Every random draw comes from the run's seed through :mod:`depthcore.seeding` (streams ``shuffle``, ``flip``,
``jitter``, and with live features ``crop``, at (phase, epoch)), so the run is deterministic on CPU for a given
seed, and a run killed after any epoch and restarted ends with the same checkpoint bytes as an uninterrupted one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from depthcore.data.batch import BACKBONE_RGB, mirror_batch
from depthcore.data.samples import EpochItem, TrainingDataset
from depthcore.device import autocast, default_device
from depthcore.errors import DepthcoreError
from depthcore.geometry.frame import flip_average
from depthcore.io import WriterLock, atomic_path, write_csv_atomic
from depthcore.models.adapters.base import DepthAdapter
from depthcore.models.predict import predict_crop, to_device, upsample_to
from depthcore.seeding import torch_generator
from depthcore.training.checkpoint import save_checkpoint
from depthcore.training.schedules import Schedule

ADAM_BETA1 = 0.9  # torch's default and every reference's (DINOv3's onecycle schedule then sets it per step)
SELECTION = "val_loss"  # lower is better; always measured on the val split
CURVE_COLUMNS = ("phase", "epoch", "lr", "train_loss", SELECTION)


class TrainingError(DepthcoreError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss, an empty split); the message says what to change."""


@dataclass
class Job:
    """One training phase. ``settings``: the resolved train section; ``meta``: what the checkpoint records about
    the model (adapter, settings, context, features identity, loss); ``val_set`` must be loaded with
    ``with_flipped=True`` (validation predicts like evaluation); ``phase`` / ``phase_index`` label the curve
    rows and select the random streams."""

    model: DepthAdapter
    loss: nn.Module
    train_set: TrainingDataset
    val_set: TrainingDataset
    settings: Any
    seed: int
    meta: Mapping[str, Any]
    phase: str = ""
    phase_index: int = 0
    num_workers: int = 0
    features: Any = None  # live features (depthcore.features.live.LiveFeatures) computed per batch; None: cached


@dataclass
class Outputs:
    """Where a phase writes: the kept ``checkpoint``, the resumable ``state``, the ``curves`` (None: none), after
    the curve rows of ``earlier`` phases."""

    checkpoint: Path
    state: Path
    curves: Path | None = None
    earlier: list[dict[str, Any]] = field(default_factory=list)


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(ADAM_BETA1, cfg.beta2), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(ADAM_BETA1, cfg.beta2), weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_schedule(optimizer: torch.optim.Optimizer, cfg, steps_per_epoch: int) -> Schedule:
    """Per-step schedule of ``cfg.schedule`` (:mod:`depthcore.training.schedules`: constant, cosine, step, and the
    references' warmup_cosine, mmcv_cosine, onecycle)."""
    return Schedule(optimizer, cfg, steps_per_epoch)


def jitter_rgb(batch: dict[str, torch.Tensor], strength: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The batch with its ``rgb`` (the adapter's input) and ``backbone_rgb`` (live features' input) scaled by
    U(1 - strength, 1 + strength) per image (the same factor for both) and clipped to [0, 1]; the batch the loss
    reads keeps the original images."""
    jittered = [key for key in ("rgb", BACKBONE_RGB) if key in batch]
    if strength <= 0 or not jittered:
        return batch
    scale = 1.0 + strength * (2.0 * torch.rand(batch[jittered[0]].shape[0], generator=generator) - 1.0)
    return batch | {key: (batch[key] * scale.to(batch[key])[:, None, None, None]).clamp(0.0, 1.0) for key in jittered}


class EpochOrder(Sampler):
    """The train split's items in the seeded order of the current :attr:`epoch` (the ``shuffle`` stream at
    (phase, epoch)), each as an :class:`EpochItem`, so that workers that outlive an epoch
    (``persistent_workers``) draw the flips of the right one."""

    def __init__(self, job: Job):
        self.job, self.epoch = job, 0

    def __len__(self) -> int:
        return len(self.job.train_set)

    def __iter__(self):
        job = self.job
        order = torch.randperm(len(self), generator=torch_generator(job.seed, "shuffle", job.phase_index, self.epoch))
        return (EpochItem(int(item), job.phase_index, self.epoch) for item in order)


def train_loader(job: Job, device: torch.device) -> DataLoader:
    """The train split's loader for every epoch of the phase (set ``loader.sampler.epoch`` before each): the
    workers persist across epochs, batches are pinned for CUDA."""
    return DataLoader(
        job.train_set,
        batch_size=job.settings.batch_size,
        sampler=EpochOrder(job),
        num_workers=job.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=job.num_workers > 0,
    )


def training_prediction(job: Job, batch: dict[str, torch.Tensor], jitter: torch.Generator) -> torch.Tensor:
    """The prediction the loss is taken on, B x 1 x h x w metres float32 at the model's output size. With
    ``flip: average`` (the authors'), the image and its mirror are forwarded with gradients and the two
    predictions (each clamped by the model as published) averaged, the mirror's flipped back; otherwise one
    pass on the batch as loaded (mirrored or not by ``flip: random``)."""
    inputs = jitter_rgb(batch, job.settings.color_jitter, jitter)
    if job.features is not None:  # live: the frozen backbone on the jittered crop
        inputs = job.features(inputs, with_flipped=job.settings.flip == "average")
    if job.settings.flip == "average":
        return flip_average(job.model(inputs).float(), job.model(mirror_batch(inputs)).float())
    return job.model(inputs).float()


def train_epoch(job: Job, epoch: int, step: Callable[[torch.Tensor], None], *, loader, state, device, amp, progress):
    """One pass of ``loader`` (:func:`train_loader`) over the train split in the epoch's seeded order;
    ``step(loss)`` updates the model. Returns the mean loss per image. ``state``: the state file a non-finite
    loss leaves the last good epoch in."""
    job.model.train()
    loader.sampler.epoch = epoch
    jitter = torch_generator(job.seed, "jitter", job.phase_index, epoch)
    total, count = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{job.settings.epochs}", unit="batch", disable=not progress, leave=False)
    for index, batch in enumerate(bar):
        batch = to_device(batch, device)
        with autocast(device, amp):
            pred = training_prediction(job, batch, jitter)
        loss = job.loss(upsample_to(pred, job.train_set.image_size), batch)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {index + 1}: training stopped. The last "
                f"good state (after epoch {epoch}) is kept in {state}; lower train.lr, enable train.grad_clip or check "
                "the inputs, then rerun (it resumes from there)"
            )
        step(loss)
        total += loss.item() * len(batch["index"])
        count += len(batch["index"])
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return total / max(count, 1)


@torch.no_grad()
def validate(job: Job, loader: DataLoader, *, device, amp) -> dict[str, float]:
    """The loss's ``validation_error`` of the flip-averaged prediction over the val split (batches weighted by
    size; those where it is undefined skipped); NaN if undefined everywhere, {} without a val split."""
    if len(job.val_set) == 0:
        return {}
    was_training = job.model.training
    job.model.eval()
    terms = []
    for batch in loader:
        batch = to_device(batch, device)
        if job.features is not None:  # live: the image's and its mirror's features, as the cached val set has
            batch = job.features(batch, with_flipped=True)
        error = job.loss.validation_error(predict_crop(job.model, batch, amp=amp, size=job.val_set.image_size), batch)
        if not math.isnan(error.item()):
            terms.append((error.item(), len(batch["index"])))
    job.model.train(was_training)
    return {SELECTION: sum(e * n for e, n in terms) / sum(n for _, n in terms) if terms else math.nan}


def score(val: Mapping[str, Any]) -> float:
    """The selection score of a validation row (lower is better); inf when undefined (no val split, or an
    error undefined on every val image)."""
    value = val.get(SELECTION, math.nan)
    return math.inf if math.isnan(value) else value


def train(
    job: Job,
    out: Outputs,
    *,
    resume_key: str | None,
    device: torch.device | str | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``job.model`` (see the module docstring) and write the kept checkpoint; returns its summary
    (``best_epoch``, ``epochs``, the kept epoch's validation row and ``history``, the curve rows of this phase).
    The state file is resumed only when written with the same ``resume_key``. ``on_epoch_end(epoch, row)`` is
    called after each epoch's state is saved."""
    cfg = job.settings
    if len(job.train_set) == 0:
        raise TrainingError("the train split is empty: check data.val_fraction and the dataset's images")
    if len(job.val_set) == 0 and cfg.select == "val":
        raise TrainingError("the val split is empty but train.select is val: set data.val_fraction > 0")
    device = default_device(device)
    amp = cfg.amp and device.type == "cuda"
    model = job.model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise TrainingError(f"adapter {job.meta.get('adapter')!r} has no trainable parameters")
    optimizer = make_optimizer(trainable, cfg)
    schedule = make_schedule(optimizer, cfg, math.ceil(len(job.train_set) / cfg.batch_size))
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    loader = train_loader(job, device)
    val_loader = DataLoader(
        job.val_set,
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=job.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=job.num_workers > 0,
    )

    def step(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        schedule.step()

    def row(epoch: int, train_loss: float | None, val: dict[str, float]) -> dict[str, Any]:
        return {
            "phase": job.phase,
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
        } | val

    writer = StateWriter()
    with WriterLock(out.state), writer:  # one trainer per state file, until it is done (or its process ends)
        saved = load_state(out.state, resume_key)
        if saved is not None:
            parts = {"state_dict": model, "optimizer": optimizer, "schedule": schedule, "scaler": scaler}
            parts |= {"loss": job.loss} if "loss" in saved else {}  # a loss's own counters (SigLoss's warm-up)
            for name, part in parts.items():
                part.load_state_dict(saved[name])
            history, best, start = saved["history"], saved["best"], int(saved["epoch"])
            print(f"{out.checkpoint}: resuming after epoch {start}")
        else:
            val = validate(job, val_loader, device=device, amp=amp)  # epoch 0: the untrained model
            history, start = [row(0, None, val)], 0
            best = {"epoch": 0, "score": score(val), "state_dict": _cpu_copy(model.state_dict()), "val": val}

        for epoch in range(start, cfg.epochs):
            train_loss = train_epoch(
                job, epoch, step, loader=loader, state=out.state, device=device, amp=amp, progress=progress
            )
            val = validate(job, val_loader, device=device, amp=amp)
            history.append(row(epoch + 1, train_loss, val))
            if cfg.select == "last" or score(val) < best["score"]:
                best = {
                    "epoch": epoch + 1,
                    "score": score(val),
                    "state_dict": _cpu_copy(model.state_dict()),
                    "val": val,
                }
            shown = "".join(f", {k} {v:.4f}" for k, v in val.items())
            print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}{shown} (kept {best['epoch']})")
            writer.submit(
                out.state, state_of(resume_key, epoch + 1, model, optimizer, schedule, scaler, history, best, job.loss)
            )
            if out.curves is not None:
                write_csv_atomic(out.curves, out.earlier + history, list(CURVE_COLUMNS))
            if on_epoch_end is not None:
                writer.wait()  # the state of this epoch is on disk
                on_epoch_end(epoch + 1, history[-1])

        summary = {"best_epoch": best["epoch"], "epochs": cfg.epochs, **best["val"]}
        meta = dict(job.meta) | {"seed": job.seed, "phase": job.phase, "train": cfg.to_dict()}
        save_checkpoint(
            out.checkpoint, state_dict=best["state_dict"], meta=meta | {"history": out.earlier + history, **summary}
        )
        if out.curves is not None:
            write_csv_atomic(out.curves, out.earlier + history, list(CURVE_COLUMNS))
        writer.wait()
        out.state.unlink(missing_ok=True)
        return summary | {"history": history}


def state_of(resume_key, epoch, model, optimizer, schedule, scaler, history, best, loss=None) -> dict[str, Any]:
    """Everything a resumed run needs after ``epoch``: weights, optimiser, schedule and scaler states, the curves
    so far and the kept epoch; tensors as CPU copies (training may go on while it is written). ``best`` is not
    copied again: its weights are already a CPU copy, and the loop replaces the dict rather than editing it."""
    live = {
        "resume_key": resume_key,
        "epoch": epoch,
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "scaler": scaler.state_dict(),
        "loss": loss.state_dict() if loss is not None else {},
        "history": history,
    }
    return _cpu_copy(live) | {"best": best}


def _cpu_copy(value: Any) -> Any:
    """``value`` (tensors in dicts, lists and tuples) with every tensor copied to the CPU, other leaves as they are."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _cpu_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cpu_copy(item) for item in value)
    return value


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write a :func:`state_of` atomically (the previous state stays until the new one is complete)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


class StateWriter:
    """Writes the per-epoch state (:func:`save_state`) in a background thread, one at a time, so that the next
    epoch trains meanwhile (on NYUv2 the MSA's state is ~1.5 GB). An error of a write is raised by the next
    :meth:`submit` or :meth:`wait`; leaving the ``with`` block waits for the last write (also when the block
    raised: the last good state is on disk when the error reaches the caller)."""

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, path: Path, state: dict[str, Any]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(path, state), name="save-state", daemon=True)
        self._thread.start()

    def _write(self, path: Path, state: dict[str, Any]) -> None:
        try:
            save_state(path, state)
        except BaseException as exc:  # raised in the training thread by wait()
            self._error = exc

    def wait(self) -> None:
        """Block until the last submitted state is written; raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> StateWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.wait()
        elif self._thread is not None:  # the block's own error goes on; the last state is still completed
            self._thread.join()


def load_state(path: Path, resume_key: str | None) -> dict[str, Any] | None:
    """The saved training state if it belongs to the same work, else None (saying why). Without a
    ``resume_key`` (a stage run by hand) a readable state is kept and TrainingError says how to resume it."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file: start afresh, like a changed one
        saved = None
    if saved is not None and resume_key is None:
        raise TrainingError(
            f"{path} holds an interrupted training (after epoch {saved.get('epoch')}), kept: this run has no input "
            f"identity (it was not started by DVC) to check it against. Resume it with `dvc repro`, which checks, "
            f"or delete {path} to start afresh"
        )
    if saved is not None and saved.get("resume_key") == resume_key:
        return saved
    print(f"{path}: starting afresh ({'it cannot be read' if saved is None else 'its inputs changed'})")
    return None
