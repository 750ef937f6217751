"""Training losses, built by name (``loss`` in params).

A loss is called as ``loss(pred, batch)``: ``pred`` is B x 1 x h x w depth in metres at the
resolution of the batch's target, ``batch`` the training batch dict. Each loss declares the batch
fields it reads in ``fields``, so the data pipeline loads exactly those: the supervised losses read
``depth`` (B x 1 x h x w metres, 0 = invalid); a self-supervised loss can declare ``pair_rgb``,
``pair_pose`` and ``intrinsics`` instead and plug into the same trainer.

Supervised losses average over the valid target pixels of the whole batch (``depth > 0`` and
finite); invalid pixels contribute neither value nor gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from depthcore.errors import DepthcoreError

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
    """A masked loss against the batch's ``depth`` target."""

    fields: tuple[str, ...] = ("depth",)

    def __init__(self, name: str, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.name = name
        self.fn = fn

    def forward(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fn(pred, batch["depth"])


_LOSSES: dict[str, Callable[[], nn.Module]] = {
    "l1": lambda: SupervisedLoss("l1", masked_l1),
    "l2": lambda: SupervisedLoss("l2", masked_l2),
    "silog": lambda: SupervisedLoss("silog", masked_silog),
}


def loss_names() -> list[str]:
    """Names accepted by :func:`build_loss`."""
    return list(_LOSSES)


def build_loss(name: str) -> nn.Module:
    """The loss registered as ``name``; ConfigError listing the valid names otherwise."""
    if name not in _LOSSES:
        raise DepthcoreError(f"params 'loss': unknown loss {name!r}; valid losses are {loss_names()}")
    return _LOSSES[name]()
