"""``loss: l2``: mean squared error (square metres) over the valid target pixels of the batch."""

from __future__ import annotations

import torch

from depthcore.losses.base import SupervisedConfig, SupervisedLoss, check_shapes, valid_target
from depthcore.losses.registry import register


class L2Config(SupervisedConfig):
    """``losses.l2``: no settings of its own."""


def masked_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean (pred - target)**2 (square metres) over the valid target pixels; NaN if there are none."""
    check_shapes(pred, target)
    mask = valid_target(target)
    return (pred[mask].float() - target[mask].float()).pow(2).mean()


@register("l2", config=L2Config)
def build_l2(*, cfg: L2Config, smoothness: float) -> SupervisedLoss:
    return SupervisedLoss(masked_l2, smoothness=smoothness)
