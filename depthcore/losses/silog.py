"""``loss: silog``: Eigen et al.'s scale-invariant log loss over the valid target pixels.

With d = ln(max(pred, LOG_EPS)) - ln(target): mean(d**2) - lambda * mean(d)**2 per image, then averaged over
the images that have valid pixels (Eigen et al. 2014, eq. 4).
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from depthcore.losses.base import SupervisedConfig, SupervisedLoss, check_shapes, valid_target
from depthcore.losses.registry import register

LOG_EPS = 1e-3  # metres; predictions are clamped to at least this before taking logs


class SilogConfig(SupervisedConfig):
    """``losses.silog``: ``variance_focus`` is Eigen's lambda (0: plain log MSE, 1: fully scale-invariant)."""

    variance_focus: Annotated[float, Field(ge=0, le=1)]


def masked_silog(pred: torch.Tensor, target: torch.Tensor, lam: float) -> torch.Tensor:
    """The scale-invariant log loss (see the module docstring); NaN if no image has a valid pixel."""
    check_shapes(pred, target)
    mask = valid_target(target)
    losses = []
    for p, t, m in zip(pred, target, mask, strict=True):
        if m.any():
            d = torch.log(p[m].float().clamp_min(LOG_EPS)) - torch.log(t[m].float())
            losses.append(d.pow(2).mean() - lam * d.mean().pow(2))
    if not losses:
        return torch.full((), float("nan"), device=pred.device)
    return torch.stack(losses).mean()


@register("silog", config=SilogConfig)
def build_silog(*, cfg: SilogConfig, smoothness: float) -> SupervisedLoss:
    return SupervisedLoss(lambda p, t: masked_silog(p, t, cfg.variance_focus), smoothness=smoothness)
