"""Prediction with a trained adapter, shared by validation (during training) and evaluation.

A batch loaded with ``with_flipped=True`` is predicted like the zero-shot baseline: the prediction of
the image and of its mirror image (flipped back) are averaged at the model's output stride and
upsampled bilinearly (align_corners=True) to the crop (:func:`predict_crop`); evaluation pastes that
into the 480 x 640 frame (:func:`iter_predictions`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from depthcore.data.batch import mirror_batch
from depthcore.device import autocast, per_image
from depthcore.geometry.frame import DEPTHCLIP_CROP, crop_shape, flip_average, paste_prediction

CROP_SIZE = crop_shape(DEPTHCLIP_CROP)


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor of ``batch`` on ``device`` (non-blocking from pinned memory)."""
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def upsample_to(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B x 1 x h x w at a stride of the crop -> B x 1 x H x W (bilinear, align_corners=True as paste)."""
    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    return F.interpolate(pred, size=size, mode="bilinear", align_corners=True)


@torch.no_grad()
def predict_crop(
    model: nn.Module, batch: dict[str, torch.Tensor], *, amp: bool = False, size: tuple[int, int] = CROP_SIZE
) -> torch.Tensor:
    """Flip-averaged prediction B x 1 x H x W at the crop (metres, float32; ``size`` = H x W, the DepthCLIP
    crop, or the frame) for a batch loaded with ``with_flipped=True``, one image at a time (the same numbers for
    any B)."""
    device = next(iter(batch.values())).device

    def one(item: dict[str, torch.Tensor]) -> torch.Tensor:
        return flip_average(model(item).float(), model(mirror_batch(item)).float())

    with autocast(device, amp):
        pred = per_image(one, batch)
    return upsample_to(pred, size)


def iter_predictions(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    amp: bool = False,
    progress: bool = False,
    features: Callable[..., dict[str, torch.Tensor]] | None = None,
    crop: tuple[int, int, int, int] = DEPTHCLIP_CROP,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For each batch of ``loader`` (loaded with ``with_flipped=True`` on ``crop``): its dataset rows (B,) and
    full-frame predictions B x 480 x 640 (metres, numpy; 0 outside ``crop``) of :func:`predict_crop`, in eval mode.
    ``features``: live features (:class:`depthcore.features.live.LiveFeatures`) that add the batch's
    ``clip_<layer>`` keys on ``device`` (None: the loader read them cached). ``crop`` FULL_FRAME: the model
    predicts the whole frame (params ``eval.frame: full``)."""
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(loader, desc="predict", unit="batch", disable=not progress, leave=False):
            indices = batch.pop("index").numpy()
            batch = to_device(batch, device)
            if features is not None:
                batch = features(batch, with_flipped=True)
            pred = predict_crop(model, batch, amp=amp, size=crop_shape(crop))
            yield indices, paste_prediction(pred, crop)[:, 0].cpu().numpy()
    finally:
        model.train(was_training)
