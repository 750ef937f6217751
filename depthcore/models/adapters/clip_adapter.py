"""CLIP-Adapter for depth, as published (the paper's Table 4; the authors' ``model/depth_adapter.py``).

Per layer4 location (RN50: 2048-d raw vectors; text: K x 1024 prompt embeddings):

1. image adapter on the **raw** vector: ``x <- ratio * mlp(x) + (1 - ratio) * x``, mlp = Linear(2048 -> 8, no
   bias), ReLU, Linear(8 -> 2048, no bias), ReLU;
2. text adapter on the L2-normalised prompt embeddings, the same form (1024 -> 8 -> 1024), then renormalised;
3. the adapters' cosine head (:func:`depthcore.models.depthclip.cosine_depth`): every second channel of x,
   L2-normalised, logits = cos / temperature (0.1: about 71x softer than DepthCLIP's head), softmax over the
   classes, depth = expected bin depth. Output B x 1 x H/32 x W/32, metres.

``image`` / ``text`` switch either side off (Table 4's rows; the authors' code always uses both). The
published training adds 0.001 x edge-aware smoothness to the L1 loss (the adapter's training preset).
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field, model_validator
from torch import nn

from depthcore.models.adapters.base import AdapterConfig, AdapterContext, DepthAdapter, clip_key
from depthcore.models.adapters.registry import register
from depthcore.models.heads.depthclip import cosine_depth

LAYER = "layer4"


class ClipAdapterConfig(AdapterConfig):
    """``adapters.clip_adapter``: which sides are adapted, the bottleneck reductions (in / hidden width),
    the residual ratio and the head's softmax temperature."""

    image: bool
    text: bool
    image_reduction: Annotated[int, Field(ge=1)]
    text_reduction: Annotated[int, Field(ge=1)]
    ratio: Annotated[float, Field(ge=0, le=1)]
    temperature: Annotated[float, Field(gt=0)]

    @model_validator(mode="after")
    def _something_to_train(self) -> ClipAdapterConfig:
        if not (self.image or self.text):
            raise ValueError("image and text are both false, so nothing would be trained")
        return self

    def batch_keys(self) -> tuple[str, ...]:
        return (clip_key(LAYER),)

    def needs_head(self) -> bool:
        return True


class ResidualBottleneck(nn.Module):
    """CLIP-Adapter's MLP with its residual mix over the last axis (... x D -> ... x D):
    ``ratio * relu(W2 relu(W1 x)) + (1 - ratio) * x``, W1: D -> D / reduction, W2 back to D, no biases."""

    def __init__(self, dim: int, *, reduction: int, ratio: float):
        super().__init__()
        if dim % reduction:
            raise ValueError(f"width {dim} is not a multiple of the reduction {reduction}")
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim // reduction, bias=False),
            nn.ReLU(),
            nn.Linear(dim // reduction, dim, bias=False),
            nn.ReLU(),
        )
        self.ratio = float(ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ratio * self.mlp(x) + (1.0 - self.ratio) * x


class ClipAdapter(DepthAdapter):
    """Raw layer4 features -> depth B x 1 x H/32 x W/32, metres (the head's text and bins are frozen buffers)."""

    output_stride = 32

    def __init__(self, cfg: ClipAdapterConfig, *, text: torch.Tensor, bins: torch.Tensor, image_dim: int):
        super().__init__(cfg)
        self.register_buffer("text", nn.functional.normalize(text.detach().float(), dim=-1).clone())
        self.register_buffer("bins", bins.detach().float().clone())
        self.image_adapter = (
            ResidualBottleneck(image_dim, reduction=cfg.image_reduction, ratio=cfg.ratio) if cfg.image else None
        )
        text_dim = int(text.shape[1])
        self.text_adapter = (
            ResidualBottleneck(text_dim, reduction=cfg.text_reduction, ratio=cfg.ratio) if cfg.text else None
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch[clip_key(LAYER)].float()
        if self.image_adapter is not None:
            x = self.image_adapter(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        text = self.text if self.text_adapter is None else self.text_adapter(self.text)
        return cosine_depth(x, text, self.bins, temperature=self.cfg.temperature)


@register("clip_adapter", config=ClipAdapterConfig)
def build_clip_adapter(*, cfg: ClipAdapterConfig, context: AdapterContext) -> ClipAdapter:
    """CLIP-Adapter around the head's prompt embeddings and bins (``context.head``, required)."""
    if context.head is None:
        raise ValueError("clip_adapter needs the DepthCLIP head (text embeddings) in its context")
    context.require_layers((LAYER,), "clip_adapter")
    return ClipAdapter(cfg, text=context.head.text, bins=context.head.bins, image_dim=context.layer_channels[LAYER])
