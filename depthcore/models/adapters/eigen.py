"""Eigen et al. (2014) coarse / fine network on RGB alone: the no-CLIP baseline of Table 2.

The authors' Eigen code cannot run (its coarse net outputs 256 channels where the refiner expects one,
see docs/fidelity.md), so this is Eigen 2014's design: five convs (11 x 11 stride 4, 5 x 5, three 3 x 3;
widths ``coarse_channels``) with 2 x 2 max-pools after the first, second and fifth (stride 32), then two
fully connected layers (``hidden`` units, ReLU) to the coarse map at stride 4; the refine net and the
two-stage training are those of the coarse_refine adapter. Output B x 1 x H/4 x W/4, metres, clamped to
[0, 10] per pass (the coarse_refine adapter's output, as the authors' loop does).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import Field
from torch import nn

from depthcore.geometry.frame import normalise_imagenet
from depthcore.models.adapters.base import AdapterContext, check_divisible
from depthcore.models.adapters.coarse_refine import FINE_STRIDE, CoarseFineAdapter, CoarseFineConfig
from depthcore.models.adapters.registry import register

COARSE_CONV_STRIDE = 32
Width = Annotated[int, Field(ge=1)]


class EigenConfig(CoarseFineConfig):
    """``adapters.eigen``: the widths of the coarse net's five convs and its fully connected ``hidden`` units."""

    any_backbone: ClassVar[bool] = True  # RGB alone

    coarse_channels: tuple[Width, Width, Width, Width, Width]

    def batch_keys(self) -> tuple[str, ...]:
        return ("rgb",)


class EigenCoarse(nn.Module):
    """RGB B x 3 x H x W in [0, 1] -> coarse depth B x 1 x H/4 x W/4 (metres)."""

    def __init__(self, image_size: tuple[int, int], *, channels: tuple[int, ...], hidden: int):
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        self.convs = nn.Sequential(
            nn.Conv2d(3, c1, 11, stride=4, padding=5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )  # fmt: skip
        h, w = image_size
        self.out_size = (h // FINE_STRIDE, w // FINE_STRIDE)
        features = c5 * (h // COARSE_CONV_STRIDE) * (w // COARSE_CONV_STRIDE)
        self.fc = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, self.out_size[0] * self.out_size[1])
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.convs(normalise_imagenet(batch["rgb"].float()))
        return self.fc(x.flatten(1)).unflatten(1, (1, *self.out_size))


@register("eigen", config=EigenConfig)
def build_eigen(*, cfg: EigenConfig, context: AdapterContext) -> CoarseFineAdapter:
    """Eigen's coarse (and with ``mode: coarse_refined`` refine) network on RGB."""
    check_divisible(context.image_size, COARSE_CONV_STRIDE, "eigen")
    coarse = EigenCoarse(context.image_size, channels=cfg.coarse_channels, hidden=cfg.hidden)
    return CoarseFineAdapter(cfg, coarse=coarse)
