"""CLIP-Adapter on DepthCLIP (Gao et al. 2021 applied to both sides of the depth classifier).

- image adapter: a two-layer bottleneck MLP (D -> D / reduction -> D, ReLU after each layer) on the
  dense embedding of every layer4 location, mixed with the input: ``ratio * mlp(x) + (1 - ratio) * x``;
- text adapter: the same form on the K depth-class embeddings, L2-normalised after the mix;
- then DepthCLIP's frozen classifier (``DepthCLIPHead.depth_from_embeddings``): softmax over the
  classes, depth = expected bin depth. Output stride 32 (layer4), metres.

``image`` / ``text`` switch either side off (the paper's Table 4 rows).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from depthcore.models.adapters.base import AdapterContext, DepthAdapter, clip_key
from depthcore.models.adapters.registry import register
from depthcore.section import AdapterConfig

LAYER = "layer4"


class ClipAdapterConfig(AdapterConfig):
    """``adapters.clip_adapter``: bottleneck MLPs (``reduction`` = in / hidden width, ``ratio`` = weight
    of the adapted feature in the residual mix) on the image and/or text side."""

    image: bool
    text: bool
    reduction: Annotated[int, Field(ge=1)]
    ratio: Annotated[float, Field(ge=0, le=1)]

    @model_validator(mode="after")
    def _something_to_train(self) -> ClipAdapterConfig:
        if not (self.image or self.text):
            raise ValueError("params 'adapters.clip_adapter': image and text are both false, nothing would be trained")
        return self

    def batch_keys(self) -> tuple[str, ...]:
        return (clip_key(LAYER),)

    def needs_head(self) -> bool:
        return True


class BottleneckMLP(nn.Module):
    """CLIP-Adapter's residual bottleneck: ... x D -> ... x D."""

    def __init__(self, dim: int, *, reduction: int, ratio: float):
        super().__init__()
        hidden = max(1, dim // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, dim, bias=False),
            nn.ReLU(inplace=True),
        )
        self.ratio = ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ratio * self.mlp(x) + (1.0 - self.ratio) * x


class ClipAdapter(DepthAdapter):
    """layer4 features -> adapted dense and text embeddings -> depth B x 1 x H/32 x W/32, metres."""

    output_stride = 32

    def __init__(self, cfg: ClipAdapterConfig, *, head: nn.Module):
        super().__init__(cfg)
        dim = int(head.text.shape[1])
        self.head = head.requires_grad_(False)  # frozen: buffers only
        mlp = {"reduction": cfg.reduction, "ratio": cfg.ratio}
        self.image_adapter = BottleneckMLP(dim, **mlp) if cfg.image else None
        self.text_adapter = BottleneckMLP(dim, **mlp) if cfg.text else None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        dense = self.head.dense_embeddings(batch[clip_key(LAYER)])  # B x D x h x w
        if self.image_adapter is not None:
            dense = self.image_adapter(dense.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        text = self.head.text
        if self.text_adapter is not None:
            text = F.normalize(self.text_adapter(text), dim=-1)
        return self.head.depth_from_embeddings(dense, text)


@register("clip_adapter", config=ClipAdapterConfig)
def build_clip_adapter(*, cfg: ClipAdapterConfig, context: AdapterContext) -> ClipAdapter:
    """CLIP-Adapter around ``context.head`` (required)."""
    if context.head is None:
        raise ValueError("clip_adapter needs the DepthCLIP head (text embeddings) in its context")
    context.require_layers((LAYER,), "clip_adapter")
    return ClipAdapter(cfg, head=context.head)
