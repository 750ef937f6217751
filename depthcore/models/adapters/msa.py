"""Multi-Scale Adapter (the paper's Table 3): a U-Net decoder over the RGB crop and CLIP's feature pyramid.

Decoders (``decoder``):

- ``published`` (:mod:`depthcore.models.adapters._msa_unet`): the authors' U-Net: a bridge of two conv
  blocks over layer4, five transposed-conv up-blocks with BatchNorm skipping layer3, layer2, layer1, the stem
  (stride 2, before its pool) and the image; ``widths`` = bridge + up-block widths (published
  2048, 1024, 512, 256, 128, 64: about 124 M parameters);
- ``narrow``: depthcore's light decoder: 1 x 1 projections of ``layers``, bilinear upsampling and two 3 x 3
  convs per scale, widths halving from ``decoder_channels`` at stride 32 to ``rgb_channels``.

CLIP layers: layer2..layer4 come from the feature cache; the stem and layer1 (cheap, but 29 MB per image to
cache) are computed from the RGB crop by the frozen CLIP stem and layer1 (the ``clip_shallow`` artifact, same
weights and normalisation as the cache) with ``shallow: compute``, or read from the cache with ``cache``.

"CLIP as initial" (``alpha`` > 0), ``clip_init``:

- ``published``: depth = alpha * Z + 2 (sigmoid(delta) - 1/2), alpha fixed, the residual bounded to +-1 m; Z is
  the authors' initial map, recomputed per pass from layer4 with the adapters' cosine head at
  ``temperature`` 0.001, clamped to [0, 10] m, upsampled bilinearly; alpha = 0: depth = delta. The output is
  clamped to [0, PUBLISHED_MAX_DEPTH] m (the authors' loop does so);
- ``learned``: depth = w * zero-shot + delta with w learned from ``alpha`` (the cached DepthCLIP zero-shot
  depth, unbounded residual); alpha = 0: depth = softplus(delta) (starting near INIT_DEPTH).

Segments (``segments``; the map is B x H x W ids, 0 = none): ``color`` (published): the map colour-coded (a
fixed colour per id, black only for 0) through the published SAM branch (two 3 -> 3 conv blocks) joined at the
last up-block (narrow decoder: a 3 x 3 conv beside the RGB features); narrow only: ``boundary`` (segment
edges as a fourth RGB channel) and ``pool`` (full-resolution features averaged within each segment and mixed
back in). Output B x 1 x H x W, metres.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from depthcore.geometry.frame import CLIP_LAYER_STRIDES, CLIP_LAYERS, normalise_imagenet
from depthcore.models.adapters._msa_unet import (
    ConvBlock,
    PublishedMSA,
    bounded_residual,
    initial_depth,
)
from depthcore.models.adapters.base import (
    INIT_DEPTH,
    PUBLISHED_MAX_DEPTH,
    AdapterConfig,
    AdapterContext,
    DepthAdapter,
    check_divisible,
    clip_key,
)
from depthcore.models.adapters.registry import register
from depthcore.models.backbones.clip_shallow import build_clip_shallow

Layer = Literal["stem", "layer1", "layer2", "layer3", "layer4"]
SHALLOW_LAYERS = ("stem", "layer1")


class MsaConfig(AdapterConfig):
    """``adapters.msa`` (see the module docstring)."""

    decoder: Literal["published", "narrow"]
    layers: tuple[Layer, ...]
    shallow: Literal["compute", "cache"]
    widths: tuple[Annotated[int, Field(ge=1)], ...]
    decoder_channels: Annotated[int, Field(ge=1)]
    rgb_channels: Annotated[int, Field(ge=1)]
    alpha: Annotated[float, Field(ge=0)]
    clip_init: Literal["published", "learned"]
    temperature: Annotated[float, Field(gt=0)]
    segments: Literal["none", "color", "boundary", "pool"]

    @model_validator(mode="after")
    def _consistent(self) -> MsaConfig:
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"'layers' must list distinct CLIP layers of {list(CLIP_LAYERS)}")
        if self.decoder == "published":
            if set(self.layers) != set(CLIP_LAYERS) or len(self.widths) != 6:
                raise ValueError(
                    "the published decoder skips all five CLIP layers (layers: "
                    f"{list(CLIP_LAYERS)}) and has six widths (bridge, five up-blocks), got layers "
                    f"{list(self.layers)} and widths {list(self.widths)}"
                )
            if self.segments in ("boundary", "pool"):
                raise ValueError(
                    f"'segments' is {self.segments!r}, which only the narrow decoder has; "
                    "the published decoder takes segments: none or color"
                )
        return self

    def batch_keys(self) -> tuple[str, ...]:
        keys = ["rgb"]
        if self.alpha > 0 and self.clip_init == "learned":
            keys.append("zeroshot")
        if self.segments != "none":
            keys.append("segments")
        read = set(self.cached_layer_names())
        return tuple(keys) + tuple(clip_key(layer) for layer in CLIP_LAYERS if layer in read)

    def cached_layer_names(self) -> tuple[str, ...]:
        """The CLIP layers read from the feature cache (layer4 also for the published initial map)."""
        layers = [layer for layer in self.layers if self.shallow == "cache" or layer not in SHALLOW_LAYERS]
        if self.needs_head() and "layer4" not in layers:
            layers.append("layer4")
        return tuple(layers)

    def needs_head(self) -> bool:
        return self.alpha > 0 and self.clip_init == "published"

    def needs_shallow(self) -> bool:
        return self.shallow == "compute" and any(layer in SHALLOW_LAYERS for layer in self.layers)


# The colour code: id -> (1 + (id * k) mod COLOR_MODULUS) / COLOR_MODULUS per channel, never black; 0 -> black.
COLOR_FACTORS = (67, 131, 199)
COLOR_MODULUS = 251


def segment_colors(labels: torch.Tensor) -> torch.Tensor:
    """B x H x W ids -> B x 3 x H x W colours in (0, 1]: a fixed colour per id, black (0, 0, 0) only for id 0."""
    labels = labels.long()
    codes = torch.stack([1 + (labels * k) % COLOR_MODULUS for k in COLOR_FACTORS], dim=1)
    return codes.float() / COLOR_MODULUS * (labels > 0)[:, None]


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
    """Two 3 x 3 conv + ReLU blocks (no BatchNorm): the narrow decoder's unit."""
    return nn.Sequential(ConvBlock(in_ch, out_ch, norm=False), ConvBlock(out_ch, out_ch, norm=False))


class NarrowDecoder(nn.Module):
    """depthcore's light decoder: image (normalised) + CLIP ``layers`` (+ segment ids) -> delta B x 1 x H x W."""

    def __init__(self, cfg: MsaConfig, *, layer_channels: dict[str, int], layer_strides: dict[str, int]):
        super().__init__()
        self.layers = tuple(sorted(cfg.layers, key=lambda name: -layer_strides[name]))  # deepest first
        self.segments = cfg.segments
        rgb_channels = cfg.rgb_channels

        def width(name: str) -> int:
            return max(rgb_channels, cfg.decoder_channels * layer_strides[name] // 32)

        self.lateral = nn.ModuleDict({name: nn.Conv2d(layer_channels[name], width(name), 1) for name in self.layers})
        self.blocks = nn.ModuleDict()
        prev = width(self.layers[0])
        for name in self.layers[1:]:
            self.blocks[name] = conv_block(prev + width(name), width(name))
            prev = width(name)
        self.reduce = nn.Conv2d(prev, rgb_channels, 1)
        self.rgb = nn.Conv2d(3 + (self.segments == "boundary"), rgb_channels, 3, padding=1)
        self.color = nn.Conv2d(3, rgb_channels, 3, padding=1) if self.segments == "color" else None
        self.full = conv_block(rgb_channels * (3 if self.segments == "color" else 2), rgb_channels)
        self.pool_mix = nn.Conv2d(2 * rgb_channels, rgb_channels, 1) if self.segments == "pool" else None
        self.out = nn.Conv2d(rgb_channels, 1, 3, padding=1)

    def forward(self, image: torch.Tensor, feats: dict[str, torch.Tensor], labels: torch.Tensor | None):
        x = self.lateral[self.layers[0]](feats[self.layers[0]].float())
        for name in self.layers[1:]:
            skip = self.lateral[name](feats[name].float())
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.blocks[name](torch.cat([x, skip], dim=1))
        x = F.interpolate(self.reduce(x), size=image.shape[-2:], mode="bilinear", align_corners=False)
        if self.segments == "boundary":
            image = torch.cat([image, segment_boundaries(labels)], dim=1)
        parts = [x, F.relu(self.rgb(image))]
        if self.color is not None:
            parts.append(F.relu(self.color(segment_colors(labels))))
        x = self.full(torch.cat(parts, dim=1))
        if self.pool_mix is not None:
            x = x + self.pool_mix(torch.cat([x, segment_mean(x, labels)], dim=1))
        return self.out(x)


class MultiScaleAdapter(DepthAdapter):
    """RGB + CLIP pyramid (+ zero-shot depth, + segments) -> depth B x 1 x H x W, metres."""

    output_stride = 1

    def __init__(self, cfg: MsaConfig, *, context: AdapterContext):
        super().__init__(cfg)
        channels = context.layer_channels
        self.shallow = build_clip_shallow(state_dict=context.shallow) if cfg.needs_shallow() else None
        if self.shallow is not None:  # its layers' shapes come from the artifact, not the cache
            channels = channels | {"stem": self.shallow.width, "layer1": 4 * self.shallow.width}
        if cfg.decoder == "published":
            skips = tuple(channels[layer] for layer in CLIP_LAYERS)
            self.decoder = PublishedMSA(
                skip_channels=skips, decoder_channels=cfg.widths, segments=cfg.segments == "color"
            )
        else:
            self.decoder = NarrowDecoder(cfg, layer_channels=channels, layer_strides=CLIP_LAYER_STRIDES)
        if cfg.needs_head():
            self.register_buffer("text", context.head.text.detach().float().clone())
            self.register_buffer("bins", context.head.bins.detach().float().clone())
        if cfg.clip_init == "learned" and cfg.alpha > 0:
            self.clip_weight = nn.Parameter(torch.tensor(float(cfg.alpha)))
        if cfg.clip_init == "learned" and cfg.decoder == "narrow":
            last = self.decoder.out
            nn.init.constant_(last.bias, 0.0 if cfg.alpha > 0 else math.log(math.expm1(INIT_DEPTH)))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.cfg
        rgb = batch["rgb"].float()
        image = normalise_imagenet(rgb)
        feats = {layer: batch[clip_key(layer)] for layer in cfg.cached_layer_names()}
        if self.shallow is not None:
            feats |= self.shallow(image)
        labels = batch.get("segments")
        if cfg.decoder == "published":
            colors = segment_colors(labels) if cfg.segments == "color" else None
            delta = self.decoder.residual(image, *(feats[layer] for layer in CLIP_LAYERS), colors)
        else:
            delta = self.decoder(image, feats, labels)
        if cfg.clip_init == "learned":
            if cfg.alpha > 0:
                return self.clip_weight * batch["zeroshot"].float() + delta
            return F.softplus(delta)
        if cfg.alpha > 0:
            start = initial_depth(
                feats["layer4"], self.text, self.bins, size=rgb.shape[-2:], temperature=cfg.temperature
            )
            delta = cfg.alpha * start + bounded_residual(delta)
        return delta.clamp(0.0, PUBLISHED_MAX_DEPTH)


@register("msa", config=MsaConfig)
def build_msa(*, cfg: MsaConfig, context: AdapterContext) -> MultiScaleAdapter:
    """Multi-Scale Adapter over ``cfg.layers`` (cached ones from the features, shallow ones computed or cached)."""
    context.require_layers(cfg.cached_layer_names(), "msa")
    if cfg.needs_shallow() and context.shallow is None:
        raise ValueError(
            "msa with shallow: compute needs the CLIP stem and layer1 weights (clip_shallow) in its context"
        )
    if cfg.needs_head() and context.head is None:
        raise ValueError("msa with published CLIP init needs the DepthCLIP head (text embeddings) in its context")
    check_divisible(context.image_size, 32, "msa")
    return MultiScaleAdapter(cfg, context=context)
