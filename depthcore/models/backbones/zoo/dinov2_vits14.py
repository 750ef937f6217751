"""DINOv2 ViT-S/14 (timm ``vit_small_patch14_dinov2.lvd142m``): blocks block1..block12, 384 channels, with class token.

Input: the 416 x 544 crop resized bilinearly to 420 x 546 (30 x 39 patches of 14), ImageNet statistics; the
intermediate blocks are returned without the final LayerNorm, as DINOv2's own depth heads read them
(``get_intermediate_layers(..., norm=False)`` in dinov2/hub/depthers.py). See
:class:`depthcore.models.backbones.zoo._vit.TimmViTBackbone`.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from depthcore.models.backbones.zoo._vit import (
    DINOV2_CITATION,
    DINOV2_FACTS,
    DINOV2_LAYERS,
    TimmViTBackbone,
    build_timm_vit,
    hf_timm_release,
    timm_state_dict,
)
from depthcore.models.backbones.zoo.base import BackboneSettings, WeightsRelease
from depthcore.models.backbones.zoo.registry import register

NAME = "dinov2_vits14"
MODEL = "vit_small_patch14_dinov2.lvd142m"
FACTS = DINOV2_FACTS
RELEASES: tuple[WeightsRelease, ...] = (hf_timm_release(MODEL, citation=DINOV2_CITATION),)


class DinoV2ViTS14Settings(BackboneSettings):
    """``backbones.dinov2_vits14``: pretrained ('official' | 'none' | a file), init_seed, layers (block1..block12)."""

    valid_layers: ClassVar[tuple[str, ...]] = DINOV2_LAYERS
    backbone: ClassVar[str] = NAME


def convert_state_dict(state) -> dict[str, torch.Tensor]:
    """timm's model.safetensors for ``vit_small_patch14_dinov2.lvd142m`` as loaded: nothing to convert."""
    return timm_state_dict(state)


@register(NAME, config=DinoV2ViTS14Settings)
def build(
    *, cfg: DinoV2ViTS14Settings, state_dict: dict[str, torch.Tensor] | None = None, clip=None
) -> TimmViTBackbone:
    """The frozen DINOv2 ViT-S/14; ``state_dict`` None: seeded informative random weights (``cfg.init_seed``)."""
    return build_timm_vit(model=MODEL, name=NAME, cfg=cfg, state_dict=state_dict)
