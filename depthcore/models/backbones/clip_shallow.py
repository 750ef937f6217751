"""The frozen shallow end of a CLIP ModifiedResNet: the 3-conv stem and layer1, rebuilt from a small state dict.

The MSA needs the stem (stride 2, taken before the stem's 2 x 2 average pool) and layer1 (stride 4) at full
resolution; caching them for every image is large, so training recomputes them from the image with this module.
It holds only the stem and layer1 tensors (about 0.2 M parameters for RN50), so a small artifact rebuilds it without
the full CLIP.

Usage (the artifact's file I/O is :mod:`depthcore.artifacts`)::

    state = shallow_state_dict(clip_model.visual)   # exact tensors + "config.*" entries (the features stage)
    shallow = build_clip_shallow(state_dict=state)
    shallow(images)  # {"stem": B x C x H/2 x W/2, "layer1": B x 4C x H/4 x W/4}
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from depthcore.errors import DepthcoreError

STEM_PREFIXES = ("conv1.", "bn1.", "conv2.", "bn2.", "conv3.", "bn3.")
LAYER1_PREFIX = "layer1."
CONFIG_WIDTH = "config.width"  # stem output channels (64 for RN50)
CONFIG_BLOCKS = "config.layer1_blocks"  # bottleneck blocks in layer1 (3 for RN50)
EXPANSION = 4  # bottleneck output channels = 4 x its width
SIZE_MULTIPLE = 4  # H and W must be multiples of 4 for exact H/2 and H/4 maps


class ShallowError(DepthcoreError, ValueError):
    """A state dict that does not hold a ModifiedResNet stem and layer1."""


class _Bottleneck(nn.Module):
    """A stride-1 ModifiedResNet bottleneck (layer1), with the parameter names of open_clip / OpenAI CLIP."""

    def __init__(self, inplanes: int, planes: int):
        super().__init__()
        out = planes * EXPANSION
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        self.downsample = None
        if inplanes != out:  # stride 1: the projection shortcut has no average pool
            self.downsample = nn.Sequential(
                OrderedDict([("0", nn.Conv2d(inplanes, out, 1, bias=False)), ("1", nn.BatchNorm2d(out))])
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ClipShallow(nn.Module):
    """Frozen stem + layer1: images B x 3 x H x W (ImageNet-normalised, H and W multiples of 4) ->
    {"stem": B x width x H/2 x W/2, "layer1": B x 4 width x H/4 x W/4}.

    Parameters never require gradients and the module stays in eval mode (BatchNorm running statistics) whatever
    ``train()`` is called with. The input is cast to the module's device and dtype; outputs are in that dtype.
    """

    def __init__(self, *, width: int, layer1_blocks: int):
        super().__init__()
        if width < 2 or width % 2 or layer1_blocks < 1:
            raise ShallowError(f"invalid stem width {width} or layer1 block count {layer1_blocks}")
        half = width // 2
        self.width = width
        self.layer1_blocks = layer1_blocks
        self.conv1 = nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.avgpool = nn.AvgPool2d(2)
        blocks = [_Bottleneck(width, width)] + [_Bottleneck(width * EXPANSION, width) for _ in range(layer1_blocks - 1)]
        self.layer1 = nn.Sequential(*blocks)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ClipShallow:  # frozen: always eval
        return super().train(False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected B x 3 x H x W images, got {tuple(images.shape)}")
        if images.shape[-2] % SIZE_MULTIPLE or images.shape[-1] % SIZE_MULTIPLE:
            raise ValueError(f"image height and width must be multiples of {SIZE_MULTIPLE}, got {tuple(images.shape)}")
        x = images.to(self.conv1.weight)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        stem = self.relu(self.bn3(self.conv3(x)))
        return {"stem": stem, "layer1": self.layer1(self.avgpool(stem))}


def shallow_state_dict(visual: nn.Module) -> dict[str, torch.Tensor]:
    """The stem and layer1 tensors of a ModifiedResNet image tower (CPU copies), plus ``config.width`` and
    ``config.layer1_blocks`` as 0-d int64 tensors, so the dict alone rebuilds the module."""
    if not all(hasattr(visual, name) for name in ("conv1", "conv3", "bn3", "layer1")):
        raise ShallowError(f"{type(visual).__name__} is not a ModifiedResNet image tower (no stem / layer1)")
    state = {
        key: value.detach().cpu().clone()
        for key, value in visual.state_dict().items()
        if key.startswith((*STEM_PREFIXES, LAYER1_PREFIX))
    }
    state[CONFIG_WIDTH] = torch.tensor(int(visual.conv3.out_channels))
    state[CONFIG_BLOCKS] = torch.tensor(len(visual.layer1))
    return state


def build_clip_shallow(*, state_dict: dict[str, torch.Tensor], device: torch.device | str | None = None) -> ClipShallow:
    """A frozen :class:`ClipShallow` from :func:`shallow_state_dict` output (loaded strictly), in float32."""
    missing = [key for key in (CONFIG_WIDTH, CONFIG_BLOCKS) if key not in state_dict]
    if missing:
        raise ShallowError(f"state dict lacks {missing}; build it with shallow_state_dict()")
    width, blocks = int(state_dict[CONFIG_WIDTH]), int(state_dict[CONFIG_BLOCKS])
    module = ClipShallow(width=width, layer1_blocks=blocks)
    weights = {key: value for key, value in state_dict.items() if not key.startswith("config.")}
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise ShallowError(
            f"state dict does not fit a stem of width {width} with {blocks} layer1 blocks: {exc}"
        ) from exc
    return module.float().to(device) if device is not None else module.float()
