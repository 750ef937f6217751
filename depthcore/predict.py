"""Prediction with a trained adapter, shared by validation (during training) and evaluation.

A batch loaded with ``with_flipped=True`` is predicted like the zero-shot baseline: the prediction of
the image and of its mirror image (flipped back) are averaged at the model's output stride,
upsampled bilinearly (align_corners=True) to the crop and pasted into the 480 x 640 frame.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from depthcore.data.store import ResumableStore
from depthcore.data.training import mirror_batch
from depthcore.device import autocast
from depthcore.geometry import NYU_HEIGHT, NYU_WIDTH, flip_average, paste_prediction
from depthcore.metrics import average, image_metrics


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
    eval_cfg,
    device: torch.device,
    amp: bool = False,
    progress: bool = False,
) -> tuple[dict[str, float], list[dict[str, float] | None]]:
    """Shared-protocol metrics of ``model`` over ``loader``'s images against ``gt_depth[index]``.

    gt_depth: a Store holding the dataset's ``depth_eval`` (N, 480, 640); eval_cfg: the eval section."""
    rows = []
    for indices, depth in iter_predictions(model, loader, device=device, amp=amp, progress=progress):
        for index, pred in zip(indices, depth, strict=True):
            rows.append(
                image_metrics(
                    gt_depth.read("depth_eval", int(index)),
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
    attrs: Mapping[str, Any],
    device: torch.device,
    progress: bool = True,
) -> Path:
    """Write ``out`` with ``depth`` (n_images, 480, 640) float32 metres: ``loader``'s images filled,
    0 elsewhere (atomic, like every store; quick, so never resumed)."""
    store = ResumableStore(out, key=None)
    depth = store.array("depth", (n_images, NYU_HEIGHT, NYU_WIDTH), np.float32)
    for indices, preds in iter_predictions(model, loader, device=device, progress=progress):
        for index, pred in zip(indices, preds, strict=True):
            depth[int(index)] = pred
    store.mark_done(n_images)
    return store.commit(attrs)
