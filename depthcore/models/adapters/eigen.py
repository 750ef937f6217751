"""Eigen et al. (2014) coarse / fine network on RGB alone: the no-CLIP baseline of Table 2.

Coarse: five convs (11 x 11 stride 4, 5 x 5, three 3 x 3; widths ``coarse_channels``) with 2 x 2
max-pools after the first, second and fifth (stride 32), then two fully connected layers to a coarse
map at ``coarse_stride``. Fine (``mode: coarse_refined``): the same fine stack as coarse_refine.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from depthcore.geometry import normalise_imagenet
from depthcore.models.adapters.base import AdapterContext, check_divisible
from depthcore.models.adapters.coarse_refine import CoarseFC, CoarseFineAdapter, FineStack, Width
from depthcore.models.adapters.registry import register
from depthcore.section import AdapterConfig

COARSE_CONV_STRIDE = 32


class EigenConfig(AdapterConfig):
    """``adapters.eigen``: Eigen et al.'s coarse conv net on RGB (``coarse_channels`` of its five convs,
    ``hidden`` FC units) -> coarse map at ``coarse_stride``; the fine stack as coarse_refine."""

    mode: Literal["coarse", "coarse_refined"]
    coarse_channels: tuple[Width, Width, Width, Width, Width]
    hidden: Width
    coarse_stride: Width
    fine_channels: Width

    def batch_keys(self) -> tuple[str, ...]:
        return ("rgb",)


class EigenCoarse(nn.Module):
    """RGB B x 3 x H x W -> coarse depth B x 1 x H/coarse_stride x W/coarse_stride (metres)."""

    def __init__(self, image_size: tuple[int, int], *, channels: tuple[int, ...], hidden: int, coarse_stride: int):
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        self.convs = nn.Sequential(
            nn.Conv2d(3, c1, 11, stride=4, padding=5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )  # fmt: skip
        h, w = image_size[0] // COARSE_CONV_STRIDE, image_size[1] // COARSE_CONV_STRIDE
        out_size = (image_size[0] // coarse_stride, image_size[1] // coarse_stride)
        self.fc = CoarseFC(c5 * h * w, hidden=hidden, out_size=out_size)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(self.convs(normalise_imagenet(batch["rgb"].float())))


@register("eigen", config=EigenConfig)
def build_eigen(*, cfg: EigenConfig, context: AdapterContext) -> CoarseFineAdapter:
    """Eigen's coarse (and with ``mode: coarse_refined`` fine) network on RGB."""
    check_divisible(context.image_size, math.lcm(COARSE_CONV_STRIDE, cfg.coarse_stride), "eigen")
    coarse = EigenCoarse(
        context.image_size, channels=cfg.coarse_channels, hidden=cfg.hidden, coarse_stride=cfg.coarse_stride
    )
    fine = FineStack(channels=cfg.fine_channels) if cfg.mode == "coarse_refined" else None
    return CoarseFineAdapter(cfg, coarse=coarse, fine=fine)
