"""What the depth probes (``linear_probe``, ``dpt_probe``) share: their settings' common part, reading a cached
layer (with its class token broadcast over the grid) and the bins head.

Bins head (AdaBins' "linear" normalisation, as DINOv2's ``DepthBaseDecodeHead.depth_pred`` and Probe3D's
``DepthBinPrediction``): K logits per pixel -> probabilities p_k -> depth = sum_k p_k * b_k, with K bin centres
b_k uniformly spaced from ``min_depth`` to ``max_depth`` (DINOv2's 'UD', ``torch.linspace``) in metres. ``norm``:

- ``linear``: p_k = (relu(l_k) + LINEAR_EPS) / sum_j (relu(l_j) + LINEAR_EPS) (both references' default);
- ``softmax``: p = softmax(l);
- ``sigmoid``: p_k = sigmoid(l_k) / sum_j sigmoid(l_j).

p is a convex combination, so depth lies in [min_depth, max_depth] by construction (clamped against rounding).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, StringConstraints, model_validator
from torch import nn

from depthcore.geometry.frame import CLIP_LAYERS
from depthcore.models.adapters.base import CLS_KEY_SUFFIX, AdapterConfig, clip_key

LINEAR_EPS = 0.1  # AdaBins' / DINOv2's offset added to the relu'd logits before normalising
# A cached backbone layer: ViT blocks block1..blockN (1-indexed), ResNet stem and layer1..layerN
LAYER_PATTERN = r"^(stem|neck|dense|layer[1-9][0-9]*|block[1-9][0-9]*)$"
NO_CLASS_TOKEN = CLIP_LAYERS  # the ResNet layers: convolutional, no class token

LayerName = Annotated[str, StringConstraints(pattern=LAYER_PATTERN)]
Norm = Literal["linear", "softmax", "sigmoid"]


def cls_key(layer: str) -> str:
    """Batch key of a cached layer's class token (B x C), e.g. 'clip_block12_cls'."""
    return clip_key(layer) + CLS_KEY_SUFFIX


class ProbeConfig(AdapterConfig):
    """The settings both probes have: the cached ``layers`` they read, whether each layer's class token is
    concatenated to its patch tokens, and the bins head (``bins`` centres from ``min_depth`` to ``max_depth``
    metres, normalised by ``norm``). They read only the layers they are told, so they fit every backbone."""

    any_backbone: ClassVar[bool] = True
    any_size: ClassVar[bool] = True  # 1 x 1 / 3 x 3 convolutions over the token grid, output resized to image_size

    layers: Annotated[tuple[LayerName, ...], Field(min_length=1)]
    class_token: bool
    bins: Annotated[int, Field(ge=2)]
    min_depth: Annotated[float, Field(gt=0)]
    max_depth: Annotated[float, Field(gt=0)]
    norm: Norm

    @model_validator(mode="after")
    def _probe_rules(self) -> ProbeConfig:
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"'layers' lists a layer twice: {list(self.layers)}; give distinct layers")
        if self.min_depth >= self.max_depth:
            raise ValueError(
                f"'min_depth' ({self.min_depth}) must be below 'max_depth' ({self.max_depth}): the bins span that range"
            )
        no_cls = [layer for layer in self.layers if layer in NO_CLASS_TOKEN]
        if self.class_token and no_cls:
            raise ValueError(
                f"'class_token' is true but the ResNet layer(s) {no_cls} have no class token: set class_token: false"
            )
        return self

    def batch_keys(self) -> tuple[str, ...]:
        keys = [clip_key(layer) for layer in self.layers]
        if self.class_token:
            keys += [cls_key(layer) for layer in self.layers]
        return tuple(keys)

    def in_channels(self, layer_channels: dict[str, int]) -> list[int]:
        """Channels each layer feeds the probe: its own, twice that with the class token."""
        return [layer_channels[layer] * (2 if self.class_token else 1) for layer in self.layers]


def layer_tokens(batch: dict[str, torch.Tensor], layer: str, class_token: bool) -> torch.Tensor:
    """B x C x h x w cached tokens of ``layer`` as float32, with the B x C class token broadcast over the grid and
    concatenated on channels when ``class_token`` (-> B x 2C x h x w; DINOv2's BNHead and Probe3D's 'dense-cls')."""
    x = batch[clip_key(layer)].float()
    if not class_token:
        return x
    cls = batch[cls_key(layer)].float()[:, :, None, None].expand_as(x)
    return torch.cat([x, cls], dim=1)


class BinsHead(nn.Module):
    """Logits B x K x h x w -> depth B x 1 x h x w in metres (module docstring); computed in float32, outside
    autocast. The bin centres are a buffer derived from the settings (not saved: the settings are)."""

    def __init__(self, bins: int, min_depth: float, max_depth: float, norm: Norm):
        super().__init__()
        self.register_buffer("centres", torch.linspace(min_depth, max_depth, bins), persistent=False)
        self.min_depth, self.max_depth, self.norm = float(min_depth), float(max_depth), norm

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """B x K x h x w logits -> B x K x h x w probabilities (sum 1 over K)."""
        if self.norm == "softmax":
            return torch.softmax(logits, dim=1)
        weights = torch.sigmoid(logits) if self.norm == "sigmoid" else F.relu(logits) + LINEAR_EPS
        return weights / weights.sum(dim=1, keepdim=True)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            p = self.probabilities(logits.float())
            depth = torch.einsum("bkhw,k->bhw", p, self.centres.float())[:, None]
            return depth.clamp(self.min_depth, self.max_depth)

    def resize(self, depth: torch.Tensor, size: tuple[int, int], *, align_corners: bool) -> torch.Tensor:
        """B x 1 x h x w depth -> B x 1 x ``size`` by bilinear interpolation, kept in [min_depth, max_depth]."""
        depth = F.interpolate(depth, size=tuple(size), mode="bilinear", align_corners=align_corners)
        return depth.clamp(self.min_depth, self.max_depth)
