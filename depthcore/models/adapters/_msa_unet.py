"""The authors' Multi-Scale Adapter (``model/depth_convadapter.py``): a U-Net decoder over the CLIP RN50 pyramid.

Published layout (in channels -> out channels, spatial stride relative to the input image):

- bridge on layer4 (2048, stride 32): two conv blocks 2048 -> 2048;
- five up-blocks, each: ConvTranspose2d(kernel 2, stride 2) prev -> out, concatenate [upsampled, skip],
  conv block (out + skip) -> out, conv block out -> out; (out, skip) = (1024, layer3 1024), (512, layer2 512),
  (256, layer1 256), (128, stem 64 taken before the stem's average pool), (64, image 3 [+ 3 SAM features]);
- head: 1 x 1 conv 64 -> 1, no activation: the "residual" delta;
- a conv block is Conv2d 3 x 3 padding 1 (with bias) -> BatchNorm2d -> ReLU;
- SAM (optional): the colour-coded segment map B x 3 x H x W -> two conv blocks 3 -> 3, concatenated after the
  image at the last up-block.

"CLIP as initial" (composed by :mod:`depthcore.models.adapters.msa`): alpha > 0: depth = alpha * Z +
:func:`bounded_residual` (delta), Z = :func:`initial_depth`; alpha == 0: depth = delta; the authors' loops
clamp each prediction to [0, 10] m. The released config uses alpha = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depthcore.models.adapters.base import PUBLISHED_MAX_DEPTH
from depthcore.models.heads.depthclip import cosine_depth

# stem, layer1, layer2, layer3, layer4 channels of CLIP RN50 (strides 2, 4, 8, 16, 32)
PUBLISHED_SKIP_CHANNELS = (64, 256, 512, 1024, 2048)
# bridge width, then the outputs of the five up-blocks (strides 32 -> 16, 8, 4, 2, 1)
PUBLISHED_DECODER_CHANNELS = (2048, 1024, 512, 256, 128, 64)
IMAGE_CHANNELS = 3
SEGMENT_CHANNELS = 3
RESIDUAL_SCALE = 2.0  # 2 * (sigmoid - 1/2) lies in (-1, 1) m
UP_KERNEL = UP_STRIDE = 2


class ConvBlock(nn.Sequential):
    """Conv2d 3 x 3 (padding 1, bias) -> BatchNorm2d (``norm``) -> ReLU: B x in x H x W -> B x out x H x W."""

    def __init__(self, in_channels: int, out_channels: int, *, norm: bool = True):
        layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1)]
        super().__init__(*layers, *([nn.BatchNorm2d(out_channels)] if norm else []), nn.ReLU())


class UpBlock(nn.Module):
    """x B x prev x h x w, skip B x s x 2h x 2w -> B x out x 2h x 2w."""

    def __init__(self, prev: int, out: int, skip: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(prev, out, UP_KERNEL, stride=UP_STRIDE)
        self.conv1 = ConvBlock(out + skip, out)
        self.conv2 = ConvBlock(out, out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(torch.cat([self.up(x), skip], dim=1)))


def bounded_residual(delta: torch.Tensor) -> torch.Tensor:
    """The published residual 2 * (sigmoid(delta) - 1/2): B x 1 x H x W in (-1, 1) metres."""
    return RESIDUAL_SCALE * (torch.sigmoid(delta.float()) - 0.5)


def initial_depth(
    layer4: torch.Tensor, text: torch.Tensor, bins: torch.Tensor, *, size: tuple[int, int], temperature: float
) -> torch.Tensor:
    """The authors' initial map for "CLIP as initial", computed per forward pass (image or mirror image).

    layer4: B x C x h x w raw features; text: K x D; the adapters' cosine head at ``temperature`` (0.001),
    clamped to [0, 10] m, upsampled bilinearly (align_corners=True) to ``size`` (the crop). B x 1 x H x W metres.
    """
    depth = cosine_depth(layer4, text, bins, temperature=temperature)
    return F.interpolate(depth.clamp(0.0, PUBLISHED_MAX_DEPTH), size=tuple(size), mode="bilinear", align_corners=True)


class PublishedMSA(nn.Module):
    """Image + CLIP pyramid (+ SAM colour map) -> the head's delta B x 1 x H x W.

    skip_channels: channels of stem, layer1, layer2, layer3, layer4; decoder_channels: bridge width and the five
    up-block widths; segments: build the SAM branch.
    """

    def __init__(
        self,
        *,
        skip_channels: tuple[int, ...] = PUBLISHED_SKIP_CHANNELS,
        decoder_channels: tuple[int, ...] = PUBLISHED_DECODER_CHANNELS,
        segments: bool = False,
    ):
        super().__init__()
        if len(skip_channels) != 5 or len(decoder_channels) != 6:
            raise ValueError("skip_channels needs 5 widths (stem, layer1..4), decoder_channels 6 (bridge, 5 up-blocks)")
        stem, layer1, layer2, layer3, layer4 = skip_channels
        bridge, *outs = decoder_channels
        self.bridge = nn.Sequential(ConvBlock(layer4, bridge), ConvBlock(bridge, bridge))
        self.segment_encoder = (
            nn.Sequential(ConvBlock(SEGMENT_CHANNELS, SEGMENT_CHANNELS), ConvBlock(SEGMENT_CHANNELS, SEGMENT_CHANNELS))
            if segments
            else None
        )
        image = IMAGE_CHANNELS + (SEGMENT_CHANNELS if segments else 0)
        skips = (layer3, layer2, layer1, stem, image)
        prevs = (bridge, *outs[:-1])
        self.up_blocks = nn.ModuleList(UpBlock(p, o, s) for p, o, s in zip(prevs, outs, skips, strict=True))
        self.head = nn.Conv2d(outs[-1], 1, 1)

    def residual(
        self,
        image: torch.Tensor,
        stem: torch.Tensor,
        layer1: torch.Tensor,
        layer2: torch.Tensor,
        layer3: torch.Tensor,
        layer4: torch.Tensor,
        segments: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The head's raw output delta, B x 1 x H x W (metres when there is no CLIP init).

        image: B x 3 x H x W ImageNet-normalised crop; stem / layer1..layer4: B x C x H/s x W/s CLIP features
        (s = 2, 4, 8, 16, 32; any float dtype, cast to float32); segments: B x 3 x H x W colour-coded SAM map in
        [0, 1] (required iff the SAM branch was built).
        """
        if (segments is None) != (self.segment_encoder is None):
            raise ValueError("pass segments exactly when the MSA was built with segments=True")
        x = self.bridge(layer4.float())
        full = image.float()
        if self.segment_encoder is not None:
            full = torch.cat([full, self.segment_encoder(segments.float())], dim=1)
        for block, skip in zip(self.up_blocks, (layer3, layer2, layer1, stem, full), strict=True):
            x = block(x, skip.float())
        return self.head(x)
