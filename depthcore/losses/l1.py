"""``loss: l1``: mean absolute error (metres) over the valid target pixels of the batch."""

from __future__ import annotations

import torch

from depthcore.losses.base import SupervisedConfig, SupervisedLoss, check_shapes, valid_target
from depthcore.losses.registry import register


class L1Config(SupervisedConfig):
    """``losses.l1``: no settings of its own."""


def masked_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |pred - target| (metres) over the valid target pixels; NaN if there are none."""
    check_shapes(pred, target)
    mask = valid_target(target)
    return (pred[mask].float() - target[mask].float()).abs().mean()


@register("l1", config=L1Config)
def build_l1(*, cfg: L1Config, smoothness: float) -> SupervisedLoss:
    return SupervisedLoss(masked_l1, smoothness=smoothness)
