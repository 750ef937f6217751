"""Coarse / refined adapter: Eigen et al.'s coarse-fine network with CLIP's zero-shot depth as the
coarse input (the paper's Table 2).

- coarse: the zero-shot depth (B x 1 x H x W metres) average-pooled to ``input_stride``, flattened,
  through two fully connected layers (``hidden`` units, ReLU) to a coarse map at ``coarse_stride``;
- fine (``mode: coarse_refined``): Eigen's fine stack: a 9 x 9 stride-2 conv and 2 x 2 max-pool on the
  normalised RGB (stride 4), the coarse map upsampled and concatenated as one more channel, then two
  5 x 5 convs to a correction added to the upsampled coarse map (depth at stride 4).

``mode: coarse`` returns the coarse map itself. Output in metres.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from depthcore.geometry import normalise_imagenet
from depthcore.models.adapters.base import INIT_DEPTH, AdapterContext, DepthAdapter, check_divisible
from depthcore.models.adapters.registry import register
from depthcore.section import AdapterConfig

FINE_STRIDE = 4
Width = Annotated[int, Field(ge=1)]


class CoarseRefineConfig(AdapterConfig):
    """``adapters.coarse_refine``: zero-shot depth (pooled to ``input_stride``) -> fully connected layers
    (``hidden`` units) -> coarse map at ``coarse_stride``; ``coarse_refined`` adds the fine stack
    (``fine_channels``) on RGB + coarse map, output at stride 4."""

    mode: Literal["coarse", "coarse_refined"]
    input_stride: Width
    hidden: Width
    coarse_stride: Width
    fine_channels: Width

    def batch_keys(self) -> tuple[str, ...]:
        return ("zeroshot",) + (("rgb",) if self.mode == "coarse_refined" else ())


class CoarseFC(nn.Module):
    """B x F features -> B x 1 x h x w coarse depth (metres) through two fully connected layers."""

    def __init__(self, in_features: int, *, hidden: int, out_size: tuple[int, int]):
        super().__init__()
        self.out_size = out_size
        self.fc = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_size[0] * out_size[1])
        )
        nn.init.constant_(self.fc[-1].bias, INIT_DEPTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)).unflatten(1, (1, *self.out_size))


class ZeroShotCoarse(nn.Module):
    """Zero-shot depth B x 1 x H x W -> coarse depth B x 1 x H/coarse_stride x W/coarse_stride."""

    def __init__(self, image_size: tuple[int, int], *, input_stride: int, hidden: int, coarse_stride: int):
        super().__init__()
        self.input_stride = input_stride
        h, w = image_size[0] // input_stride, image_size[1] // input_stride
        self.fc = CoarseFC(
            h * w, hidden=hidden, out_size=(image_size[0] // coarse_stride, image_size[1] // coarse_stride)
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(F.avg_pool2d(batch["zeroshot"].float(), self.input_stride))


class FineStack(nn.Module):
    """Eigen's fine network: RGB + coarse map -> depth B x 1 x H/4 x W/4 (metres)."""

    def __init__(self, *, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels - 1 if channels > 1 else 1, 9, stride=2, padding=4)
        self.conv2 = nn.Conv2d(self.conv1.out_channels + 1, channels, 5, padding=2)
        self.conv3 = nn.Conv2d(channels, 1, 5, padding=2)
        nn.init.constant_(self.conv3.bias, 0.0)

    def forward(self, rgb: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(normalise_imagenet(rgb))), 2)
        coarse = F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=True)
        x = F.relu(self.conv2(torch.cat([x, coarse], dim=1)))
        return self.conv3(x) + coarse  # the fine stack corrects the coarse map


class CoarseFineAdapter(DepthAdapter):
    """A coarse network (any module mapping the batch to B x 1 x h x w) and an optional fine stack."""

    def __init__(self, cfg: AdapterConfig, *, coarse: nn.Module, fine: FineStack | None):
        super().__init__(cfg)
        self.coarse = coarse
        self.fine = fine
        self.output_stride = FINE_STRIDE if fine is not None else cfg.coarse_stride

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        coarse = self.coarse(batch)
        if self.fine is None:
            return coarse
        return self.fine(batch["rgb"].float(), coarse)


@register("coarse_refine", config=CoarseRefineConfig)
def build_coarse_refine(*, cfg: CoarseRefineConfig, context: AdapterContext) -> CoarseFineAdapter:
    """Coarse (and with ``mode: coarse_refined`` fine) adapter on the zero-shot depth."""
    check_divisible(context.image_size, math.lcm(cfg.input_stride, cfg.coarse_stride, FINE_STRIDE), "coarse_refine")
    coarse = ZeroShotCoarse(
        context.image_size, input_stride=cfg.input_stride, hidden=cfg.hidden, coarse_stride=cfg.coarse_stride
    )
    fine = FineStack(channels=cfg.fine_channels) if cfg.mode == "coarse_refined" else None
    return CoarseFineAdapter(cfg, coarse=coarse, fine=fine)
