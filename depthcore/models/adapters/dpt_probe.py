"""Probe3D's DPT depth probe (El Banani et al. 2024, "Probing the 3D Awareness of Visual Foundation Models";
``DPT`` + ``DepthHead`` of mbanani/probe3d evals/models/probes.py, configs/probe/depth_dpt.yaml) on any
backbone's four cached layers.

For the four ``layers``, shallow to deep (B x C_i x h_i x w_i tokens, with ``class_token`` the class token
broadcast and concatenated: B x 2C_i x h_i x w_i):

1. reassemble: a 1 x 1 conv C_i -> ``features`` per layer, then a bilinear resize (align_corners True) to its
   fusion grid. ``fusion``:

   - ``probe3d`` (the reference): every layer to twice the deepest layer's grid (ViTs: their common patch grid
     x 2, e.g. 60 x 78 for DINOv2 on the 416 x 544 crop);
   - ``pyramid`` (DPT's reassembly, Ranftl et al. 2021): layer i to ceil(H / s) x ceil(W / s) of the crop, s = 4,
     8, 16, 32 (ResNet layer1..layer4 already are);

2. fuse top-down (Probe3D's ``FeatureFusionBlock``): out = RCU(f_4); for i = 3, 2, 1: out = RCU(RCU(f_i) +
   resize(out)), each RCU (residual conv unit) x + relu(conv(relu(conv(x)))), ``kernel_size`` x ``kernel_size``
   convs of ``features`` channels;
3. head: resize (probe3d: x 4; pyramid: to stride 2), 3 x 3 conv + ReLU, 3 x 3 conv to ``bins`` logits, resize
   (probe3d: x 2; pyramid: to the crop), the bins head (:mod:`._probe`), the depth resized to the crop:
   B x 1 x H x W metres in [min_depth, max_depth] (output stride 1).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from depthcore.models.adapters._probe import BinsHead, ProbeConfig, layer_tokens
from depthcore.models.adapters.base import AdapterContext, DepthAdapter
from depthcore.models.adapters.registry import register

N_LAYERS = 4
PYRAMID_STRIDES = (4, 8, 16, 32)  # fusion: pyramid, the crop strides of the four layers, shallow to deep
PYRAMID_HEAD_STRIDE = 2  # fusion: pyramid, the stride of the head's first conv
PROBE3D_REASSEMBLE = 2  # fusion: probe3d, the fusion grid = this x the deepest layer's grid
PROBE3D_HEAD_UP = 4  # fusion: probe3d, fused features upsampled by this before the head's convs
PROBE3D_LOGITS_UP = 2  # fusion: probe3d, logits upsampled by this before the bins head
ALIGN_CORNERS = True  # Probe3D's every resize


class DptProbeConfig(ProbeConfig):
    """``adapters.dpt_probe`` (see the module docstring): the probe settings plus the fusion width
    ``features``, the residual units' ``kernel_size`` and the ``fusion`` grids."""

    features: Annotated[int, Field(ge=1)]
    kernel_size: Annotated[int, Field(ge=1)]
    fusion: Literal["probe3d", "pyramid"]

    @model_validator(mode="after")
    def _dpt_rules(self) -> DptProbeConfig:
        if len(self.layers) != N_LAYERS:
            raise ValueError(
                f"'layers' must list exactly {N_LAYERS} layers, shallow to deep (DPT fuses four), got "
                f"{len(self.layers)}: {list(self.layers)}"
            )
        if self.kernel_size % 2 == 0:
            raise ValueError(f"'kernel_size' must be odd (same-size convs), got {self.kernel_size}")
        return self


class ResidualConvUnit(nn.Module):
    """Probe3D's unit, B x F x h x w -> same: x + relu(conv(relu(conv(x)))), k x k convs with bias."""

    def __init__(self, features: int, kernel_size: int):
        super().__init__()
        pad = kernel_size // 2
        self.conv = nn.Sequential(
            nn.Conv2d(features, features, kernel_size, padding=pad),
            nn.ReLU(),
            nn.Conv2d(features, features, kernel_size, padding=pad),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class FusionBlock(nn.Module):
    """One fusion step: RCU(RCU(x) + path) (``with_path``), or RCU(x) for the deepest layer."""

    def __init__(self, features: int, kernel_size: int, *, with_path: bool):
        super().__init__()
        self.skip = ResidualConvUnit(features, kernel_size) if with_path else None
        self.out = ResidualConvUnit(features, kernel_size)

    def forward(self, x: torch.Tensor, path: torch.Tensor | None = None) -> torch.Tensor:
        if path is not None:
            x = self.skip(x) + path
        return self.out(x)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of the last two axes to ``size`` (align_corners as Probe3D); no-op at that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=ALIGN_CORNERS)


def scaled(size, factor: int) -> tuple[int, int]:
    return tuple(int(factor * s) for s in size)


class DptProbe(DepthAdapter):
    """Four cached layers -> depth B x 1 x H x W, metres (the module docstring)."""

    output_stride = 1

    def __init__(self, cfg: DptProbeConfig, *, in_channels: list[int], image_size: tuple[int, int]):
        super().__init__(cfg)
        f, k = cfg.features, cfg.kernel_size
        self.image_size = tuple(image_size)
        self.project = nn.ModuleList(nn.Conv2d(c, f, kernel_size=1) for c in in_channels)
        self.fuse = nn.ModuleList(FusionBlock(f, k, with_path=i < N_LAYERS - 1) for i in range(N_LAYERS))
        self.out_conv = nn.Sequential(
            nn.Conv2d(f, f, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(f, cfg.bins, 3, padding=1),
        )
        self.head = BinsHead(cfg.bins, cfg.min_depth, cfg.max_depth, cfg.norm)

    def grids(self, feats: list[torch.Tensor]) -> list[tuple[int, int]]:
        """The fusion grid of each layer, shallow to deep."""
        if self.cfg.fusion == "probe3d":
            return [scaled(feats[-1].shape[-2:], PROBE3D_REASSEMBLE)] * N_LAYERS
        h, w = self.image_size
        return [(math.ceil(h / s), math.ceil(w / s)) for s in PYRAMID_STRIDES]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.cfg
        feats = [layer_tokens(batch, layer, cfg.class_token) for layer in cfg.layers]
        grids = self.grids(feats)
        feats = [resize(conv(x), grid) for conv, x, grid in zip(self.project, feats, grids, strict=True)]
        out = self.fuse[-1](feats[-1])
        for i in reversed(range(N_LAYERS - 1)):
            out = self.fuse[i](feats[i], resize(out, grids[i]))
        if cfg.fusion == "probe3d":
            logits = self.out_conv(resize(out, scaled(out.shape[-2:], PROBE3D_HEAD_UP)))
            logits = resize(logits, scaled(logits.shape[-2:], PROBE3D_LOGITS_UP))
        else:
            h, w = self.image_size
            head_grid = (math.ceil(h / PYRAMID_HEAD_STRIDE), math.ceil(w / PYRAMID_HEAD_STRIDE))
            logits = resize(self.out_conv(resize(out, head_grid)), self.image_size)
        return self.head.resize(self.head(logits), self.image_size, align_corners=ALIGN_CORNERS)


@register("dpt_probe", config=DptProbeConfig)
def build_dpt_probe(*, cfg: DptProbeConfig, context: AdapterContext) -> DptProbe:
    """Probe3D's DPT probe over ``cfg.layers`` (their widths from the context)."""
    context.require_layers(cfg.layers, "dpt_probe")
    return DptProbe(cfg, in_channels=cfg.in_channels(context.layer_channels), image_size=context.image_size)
