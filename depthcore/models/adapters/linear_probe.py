"""DINOv2's linear depth probe ("lin. 1" / "lin. 4", DINOv2 Sec. 7.4; ``BNHead`` of dinov2/hub/depth/decode_heads.py)
on any backbone's cached layers.

Per image, for each of ``layers`` (B x C x h x w patch tokens, with ``class_token`` the B x C class token
broadcast over the grid and concatenated: B x 2C x h x w):

1. every layer resized bilinearly (align_corners False) to ``upsample`` x the first layer's grid (DINOv2: 4);
2. concatenated on channels (sum of the layers' widths, D), BatchNorm2d(D) when ``batch_norm``;
3. a 1 x 1 conv D -> ``bins`` logits, the bins head (:mod:`._probe`): depth in [min_depth, max_depth] m;
4. the depth resized bilinearly (align_corners False) to the crop: B x 1 x H x W metres (output stride 1).

"lin. 1" is ``layers: [block12]``; "lin. 4" is ``[block3, block6, block9, block12]`` (DINOv2's out_index
[2, 5, 8, 11] for ViT-S/B). The grid is the tensor's own (e.g. 30 x 39 for DINOv2 on the 416 x 544 crop), never
crop / stride.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from depthcore.models.adapters._probe import BinsHead, ProbeConfig, layer_tokens
from depthcore.models.adapters.base import AdapterContext, DepthAdapter
from depthcore.models.adapters.registry import register


class LinearProbeConfig(ProbeConfig):
    """``adapters.linear_probe`` (see the module docstring): the probe settings plus the token ``upsample``
    factor and whether the concatenated tokens are batch-normalised."""

    upsample: Annotated[int, Field(ge=1)]
    batch_norm: bool


class LinearProbe(DepthAdapter):
    """Cached tokens of ``cfg.layers`` -> depth B x 1 x H x W, metres (the module docstring)."""

    output_stride = 1

    def __init__(self, cfg: LinearProbeConfig, *, in_channels: list[int], image_size: tuple[int, int]):
        super().__init__(cfg)
        width = sum(in_channels)
        self.image_size = tuple(image_size)
        self.norm = nn.BatchNorm2d(width) if cfg.batch_norm else nn.Identity()
        self.conv = nn.Conv2d(width, cfg.bins, kernel_size=1)
        self.head = BinsHead(cfg.bins, cfg.min_depth, cfg.max_depth, cfg.norm)

    def tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """B x D x (upsample h0) x (upsample w0): every layer at the first layer's grid x upsample, concatenated."""
        cfg = self.cfg
        feats = [layer_tokens(batch, layer, cfg.class_token) for layer in cfg.layers]
        size = [cfg.upsample * s for s in feats[0].shape[-2:]]
        return torch.cat([F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in feats], dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        depth = self.head(self.conv(self.norm(self.tokens(batch))))
        return self.head.resize(depth, self.image_size, align_corners=False)


@register("linear_probe", config=LinearProbeConfig)
def build_linear_probe(*, cfg: LinearProbeConfig, context: AdapterContext) -> LinearProbe:
    """DINOv2's linear probe over ``cfg.layers`` (their widths from the context)."""
    context.require_layers(cfg.layers, "linear_probe")
    return LinearProbe(cfg, in_channels=cfg.in_channels(context.layer_channels), image_size=context.image_size)
