"""What every loss shares: the contract, its settings base class, the valid-target mask and the
edge-aware smoothness.

A loss is an ``nn.Module`` called as ``loss(pred, batch)``: ``pred`` is B x 1 x h x w depth in metres at
the resolution of the batch's images, ``batch`` the training batch dict (:mod:`depthcore.data.samples`).
It declares the batch fields it reads in ``fields``, so the data pipeline loads exactly those, and
``validation_error(pred, batch)``: the error that selects a checkpoint on the val split (NaN where it is
undefined, e.g. no valid pixel). Each loss is the module ``<name>.py`` of this package with its settings
class (``losses.<name>`` in params), registered by name (:mod:`depthcore.losses.registry`).

Supervised losses average over the valid target pixels of the whole batch (``depth > 0`` and finite);
invalid pixels contribute neither value nor gradient. With ``smoothness`` > 0 they add that weight times
the edge-aware smoothness of the prediction (the published CLIP-Adapter and coarse/refine training use
0.001: the train section's ``smoothness``, which a published preset sets).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from depthcore.geometry.frame import check_image
from depthcore.section import Section

# Guards the per-image mean of the depth map in the smoothness normalisation (metres).
MEAN_DEPTH_EPS = 1e-7


class LossConfig(Section):
    """Settings of one loss (``losses.<name>``) and what the loss needs from the pipeline."""

    needs_pairs: ClassVar[bool] = False  # reads second views (the pairs stage's store)
    uses_train_smoothness: ClassVar[bool] = False  # adds train.smoothness x edge-aware smoothness

    @abstractmethod
    def batch_keys(self, *, smoothness: float) -> tuple[str, ...]:
        """The batch fields the loss reads, with ``smoothness`` the train section's weight in effect."""


class SupervisedConfig(LossConfig):
    """A loss against the dataset's dense depth target, plus the train section's smoothness weight."""

    uses_train_smoothness: ClassVar[bool] = True

    def batch_keys(self, *, smoothness: float) -> tuple[str, ...]:
        return supervised_fields(smoothness)


def supervised_fields(smoothness: float) -> tuple[str, ...]:
    """What a supervised loss reads: the target ``depth``, and the image ``rgb`` for the smoothness term."""
    return ("depth",) + (("rgb",) if smoothness > 0 else ())


def valid_target(depth: torch.Tensor) -> torch.Tensor:
    """B x 1 x h x w bool: target pixels that count (positive and finite)."""
    return torch.isfinite(depth) & (depth > 0)


def check_shapes(pred: torch.Tensor, target: torch.Tensor) -> None:
    """ValueError unless prediction and target have the same shape."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def edge_aware_smoothness(depth: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Scalar: mean |d_x D*| e^-|d_x I| + mean |d_y D*| e^-|d_y I| over pixels and batch.

    depth: B x 1 x H x W metres; D* = depth / its per-image mean (scale-free, as monodepth2).
    image: B x C x H x W in [0, 1]; its gradients are averaged over channels. Forward differences;
    each mean is over the H x (W - 1) (resp. (H - 1) x W) differences.
    """
    check_image("depth", depth, channels=1)
    check_image("image", image)
    normalised = depth / depth.mean(dim=(2, 3), keepdim=True).clamp_min(MEAN_DEPTH_EPS)
    depth_dx = (normalised[..., :, 1:] - normalised[..., :, :-1]).abs()
    depth_dy = (normalised[..., 1:, :] - normalised[..., :-1, :]).abs()
    image_dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(dim=1, keepdim=True)
    image_dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=1, keepdim=True)
    return (depth_dx * torch.exp(-image_dx)).mean() + (depth_dy * torch.exp(-image_dy)).mean()


class SupervisedLoss(nn.Module):
    """A masked loss ``fn(pred, target)`` against the batch's ``depth`` (NaN when no target pixel is valid),
    plus ``smoothness`` x edge-aware smoothness. Trains on 0 (with a graph) where the batch has no valid pixel."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, smoothness: float):
        super().__init__()
        self.fn = fn
        self.smoothness = float(smoothness)
        self.fields = supervised_fields(smoothness)

    def forward(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        target = batch["depth"]
        loss = self.fn(pred, target) if valid_target(target).any() else pred.sum() * 0.0
        if self.smoothness > 0:
            loss = loss + self.smoothness * edge_aware_smoothness(pred, batch["rgb"])
        return loss

    def validation_error(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The masked error alone (no smoothness); NaN when no target pixel is valid."""
        return self.fn(pred, batch["depth"])
