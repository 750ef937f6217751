"""Training losses, built by name (``loss`` in params).

A loss is called as ``loss(pred, batch)``: ``pred`` is B x 1 x h x w depth in metres at the
resolution of the batch's target, ``batch`` the training batch dict. Each loss declares the batch
fields it reads in ``fields``, so the data pipeline loads exactly those: the supervised losses read
``depth`` (B x 1 x h x w metres, 0 = invalid); ``ssl`` (:class:`depthcore.photometric.PhotometricLoss`)
reads the second view (``pair_rgb``, ``pair_pose``, ``pair_valid``, ``intrinsics``) and ``rgb``.

Supervised losses average over the valid target pixels of the whole batch (``depth > 0`` and
finite); invalid pixels contribute neither value nor gradient. With ``smoothness`` > 0 they add that
weight times the edge-aware smoothness of the prediction (the published CLIP-Adapter and coarse/refine
training use 0.001).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from depthcore.errors import DepthcoreError
from depthcore.photometric import PhotometricLoss, edge_aware_smoothness

SILOG_LAMBDA = 0.5  # Eigen et al. 2014, eq. 4: weight of the squared mean log error
LOG_EPS = 1e-3  # metres; predictions are clamped to at least this before taking logs


def valid_target(depth: torch.Tensor) -> torch.Tensor:
    """B x 1 x h x w bool: target pixels that count (positive and finite)."""
    return torch.isfinite(depth) & (depth > 0)


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def masked_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |pred - target| (metres) over the valid target pixels; 0 (with a graph) if there are none."""
    _check(pred, target)
    mask = valid_target(target)
    if not mask.any():
        return pred.sum() * 0.0
    return (pred[mask].float() - target[mask].float()).abs().mean()


def masked_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean (pred - target)**2 (square metres) over the valid target pixels."""
    _check(pred, target)
    mask = valid_target(target)
    if not mask.any():
        return pred.sum() * 0.0
    return (pred[mask].float() - target[mask].float()).pow(2).mean()


def masked_silog(pred: torch.Tensor, target: torch.Tensor, lam: float = SILOG_LAMBDA) -> torch.Tensor:
    """Eigen et al.'s scale-invariant log loss over the valid target pixels.

    With d = ln(max(pred, LOG_EPS)) - ln(target): mean(d**2) - lam * mean(d)**2 (per image, then
    averaged over the images that have valid pixels).
    """
    _check(pred, target)
    mask = valid_target(target)
    losses = []
    for p, t, m in zip(pred, target, mask, strict=True):
        if m.any():
            d = torch.log(p[m].float().clamp_min(LOG_EPS)) - torch.log(t[m].float())
            losses.append(d.pow(2).mean() - lam * d.mean().pow(2))
    if not losses:
        return pred.sum() * 0.0
    return torch.stack(losses).mean()


class SupervisedLoss(nn.Module):
    """A masked loss against the batch's ``depth`` target, plus ``smoothness`` x edge-aware smoothness."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, smoothness: float = 0.0):
        super().__init__()
        self.fn = fn
        self.smoothness = float(smoothness)
        self.fields: tuple[str, ...] = ("depth",) + (("rgb",) if smoothness > 0 else ())

    def forward(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = self.fn(pred, batch["depth"])
        if self.smoothness > 0:
            loss = loss + self.smoothness * edge_aware_smoothness(pred, batch["rgb"])
        return loss


SUPERVISED: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": masked_l1,
    "l2": masked_l2,
    "silog": masked_silog,
}
LOSS_NAMES = (*SUPERVISED, "ssl")


def build_loss(name: str, *, smoothness: float = 0.0, ssl=None) -> nn.Module:
    """The loss ``name`` (l1, l2, silog with ``smoothness``; ssl with the ssl section's alpha and smoothness)."""
    if name == "ssl":
        if ssl is None:
            raise DepthcoreError("the ssl loss needs the params 'ssl' section")
        return PhotometricLoss(alpha=ssl.alpha, smoothness=ssl.smoothness)
    if name not in SUPERVISED:
        raise DepthcoreError(f"params 'loss': unknown loss {name!r}; valid losses are {list(LOSS_NAMES)}")
    return SupervisedLoss(SUPERVISED[name], smoothness=smoothness)
