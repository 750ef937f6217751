"""Multi-Scale Adapter: a U-Net decoder over the RGB image and cached CLIP feature maps.

Decoder: each CLIP layer in ``layers`` is projected by a 1 x 1 conv; starting at the deepest, the
running map is upsampled x2 (bilinear), concatenated with the next shallower projection and passed
through two 3 x 3 conv + ReLU. Widths halve with each doubling of resolution, from
``decoder_channels`` at stride 32 down to ``rgb_channels``. At full resolution the map is
concatenated with RGB features (a 3 x 3 conv on the normalised image) and refined by two more convs.

Segments (``segments``; the segment map is B x H x W ids, 0 = none):

- ``color``: the map colour-coded (a fixed colour per id) through a small conv, concatenated with
  the RGB features (as published);
- ``boundary``: segment edges as a fourth input channel of the RGB conv;
- ``pool``: the full-resolution decoder features averaged within each segment and mixed back in
  (1 x 1 conv on [features, segment means], residual).

Output: ``clip_init_weight`` 0: depth = softplus(decoder output) (starting near INIT_DEPTH);
> 0: depth = w * zero-shot depth + decoder output, w a learned scale initialised to
``clip_init_weight`` (the decoder refines the upsampled zero-shot depth). Stride 1, metres.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from depthcore.geometry import CLIP_LAYERS, normalise_imagenet
from depthcore.models.adapters.base import INIT_DEPTH, AdapterContext, DepthAdapter, check_divisible, clip_key
from depthcore.models.adapters.registry import register
from depthcore.section import AdapterConfig

Layer = Literal["stem", "layer1", "layer2", "layer3", "layer4"]


class MsaConfig(AdapterConfig):
    """``adapters.msa``: U-Net decoder over RGB and the CLIP ``layers`` (deepest first up to full
    resolution). ``clip_init_weight``: 0 = decoder output alone, > 0 = initial weight of the zero-shot
    depth that the decoder refines (a learned scale). ``segments``: how the segment map enters."""

    layers: tuple[Layer, ...]
    decoder_channels: Annotated[int, Field(ge=1)]
    rgb_channels: Annotated[int, Field(ge=1)]
    clip_init_weight: Annotated[float, Field(ge=0)]
    segments: Literal["none", "color", "boundary", "pool"]

    @field_validator("layers")
    @classmethod
    def _distinct_layers(cls, layers: tuple[str, ...]) -> tuple[str, ...]:
        if not layers or len(set(layers)) != len(layers):
            raise ValueError(f"list distinct CLIP layers, at least one of {list(CLIP_LAYERS)}")
        return layers

    def batch_keys(self) -> tuple[str, ...]:
        keys = ["rgb"] + (["zeroshot"] if self.clip_init_weight > 0 else [])
        keys += ["segments"] if self.segments != "none" else []
        return tuple(keys) + tuple(clip_key(layer) for layer in CLIP_LAYERS if layer in self.layers)


# Multipliers of the colour code: id -> ((id * k) mod COLOR_MODULUS) / (COLOR_MODULUS - 1) per channel.
COLOR_FACTORS = (67, 131, 199)
COLOR_MODULUS = 251


def segment_colors(labels: torch.Tensor) -> torch.Tensor:
    """B x H x W ids -> B x 3 x H x W colours in [0, 1]; a fixed colour per id, black for 0."""
    labels = labels.long()
    colors = torch.stack([(labels * k) % COLOR_MODULUS for k in COLOR_FACTORS], dim=1).float() / (COLOR_MODULUS - 1)
    return colors * (labels > 0)[:, None]


def segment_boundaries(labels: torch.Tensor) -> torch.Tensor:
    """B x H x W ids -> B x 1 x H x W float, 1 where a pixel's right or lower neighbour has another id."""
    edges = torch.zeros_like(labels, dtype=torch.bool)
    edges[:, :, :-1] |= labels[:, :, :-1] != labels[:, :, 1:]
    edges[:, :-1, :] |= labels[:, :-1, :] != labels[:, 1:, :]
    return edges[:, None].float()


def segment_mean(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """x: B x C x H x W, labels: B x H x W -> B x C x H x W, each pixel the mean of x over its segment
    (per image); 0 where the id is 0 (no segment)."""
    b, c, h, w = x.shape
    labels = labels.long()
    n = int(labels.max()) + 1
    ids = (labels + n * torch.arange(b, device=labels.device)[:, None, None]).reshape(-1)
    flat = x.permute(1, 0, 2, 3).reshape(c, -1)
    sums = flat.new_zeros(c, b * n).index_add(1, ids, flat)
    counts = flat.new_zeros(b * n).index_add(0, ids, flat.new_ones(ids.shape))
    means = (sums / counts.clamp_min(1.0))[:, ids].reshape(c, b, h, w).permute(1, 0, 2, 3)
    return means * (labels > 0)[:, None].to(means.dtype)


def conv_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3 x 3 conv + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class MultiScaleAdapter(DepthAdapter):
    """RGB + CLIP layers (+ zero-shot depth, + segments) -> depth B x 1 x H x W, metres."""

    output_stride = 1

    def __init__(self, cfg: MsaConfig, *, layer_channels: dict[str, int], layer_strides: dict[str, int]):
        super().__init__(cfg)
        decoder_channels, rgb_channels, segments = cfg.decoder_channels, cfg.rgb_channels, cfg.segments
        self.layers = tuple(sorted(cfg.layers, key=lambda name: -layer_strides[name]))  # deepest first
        self.strides = {name: layer_strides[name] for name in self.layers}
        self.segments = segments
        self.refine = cfg.clip_init_weight > 0

        def width(stride: int) -> int:
            return max(rgb_channels, decoder_channels * stride // 32)

        self.lateral = nn.ModuleDict(
            {name: nn.Conv2d(layer_channels[name], width(self.strides[name]), 1) for name in self.layers}
        )
        self.blocks = nn.ModuleDict()
        prev = width(self.strides[self.layers[0]])
        for name in self.layers[1:]:
            out = width(self.strides[name])
            self.blocks[name] = conv_block(prev + out, out)
            prev = out
        self.reduce = nn.Conv2d(prev, rgb_channels, 1)
        self.rgb = nn.Conv2d(3 + (segments == "boundary"), rgb_channels, 3, padding=1)
        self.color = nn.Conv2d(3, rgb_channels, 3, padding=1) if segments == "color" else None
        full_in = rgb_channels * (3 if segments == "color" else 2)
        self.full = conv_block(full_in, rgb_channels)
        self.pool_mix = nn.Conv2d(2 * rgb_channels, rgb_channels, 1) if segments == "pool" else None
        self.out = nn.Conv2d(rgb_channels, 1, 3, padding=1)
        if self.refine:
            self.clip_weight = nn.Parameter(torch.tensor(float(cfg.clip_init_weight)))
            nn.init.constant_(self.out.bias, 0.0)
        else:
            nn.init.constant_(self.out.bias, math.log(math.expm1(INIT_DEPTH)))  # softplus(bias) = INIT_DEPTH

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        rgb = batch["rgb"].float()
        x = self.lateral[self.layers[0]](batch[clip_key(self.layers[0])].float())
        for name in self.layers[1:]:
            skip = self.lateral[name](batch[clip_key(name)].float())
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.blocks[name](torch.cat([x, skip], dim=1))
        x = F.interpolate(self.reduce(x), size=rgb.shape[-2:], mode="bilinear", align_corners=False)
        image = normalise_imagenet(rgb)
        if self.segments == "boundary":
            image = torch.cat([image, segment_boundaries(batch["segments"])], dim=1)
        parts = [x, F.relu(self.rgb(image))]
        if self.color is not None:
            parts.append(F.relu(self.color(segment_colors(batch["segments"]))))
        x = self.full(torch.cat(parts, dim=1))
        if self.pool_mix is not None:
            x = x + self.pool_mix(torch.cat([x, segment_mean(x, batch["segments"])], dim=1))
        out = self.out(x)
        if self.refine:
            return self.clip_weight * batch["zeroshot"].float() + out
        return F.softplus(out)


@register("msa", config=MsaConfig)
def build_msa(*, cfg: MsaConfig, context: AdapterContext) -> MultiScaleAdapter:
    """Multi-Scale Adapter over ``cfg.layers`` (which the features must provide)."""
    context.require_layers(cfg.layers, "msa")
    check_divisible(context.image_size, max(context.layer_strides[name] for name in cfg.layers), "msa")
    return MultiScaleAdapter(cfg, layer_channels=context.layer_channels, layer_strides=context.layer_strides)
