"""DINOv2 ViTs (timm ``vit_*_patch14_dinov2.lvd142m``): blocks block1..block12 with class token; one entry per
variant in :data:`VARIANTS` (timm's style: a variant is a line).

Input: the 416 x 544 crop resized bilinearly to 420 x 546 (30 x 39 patches of 14), ImageNet statistics; the
intermediate blocks are returned without the final LayerNorm, as DINOv2's own depth heads read them
(``get_intermediate_layers(..., norm=False)`` in dinov2/hub/depthers.py). Weights: timm's Hugging Face
``model.safetensors`` (tag ``official``) or Meta's ``dinov2_vit*14_pretrain.pth`` (a file under
``weights/backbone/``). See :class:`depthcore.models.backbones.zoo._vit.TimmViTBackbone`.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from depthcore.models.backbones.zoo._vit import (
    TimmViTBackbone,
    block_layers,
    build_timm_vit,
    hf_timm_release,
    timm_state_dict,
)
from depthcore.models.backbones.zoo.base import BackboneFacts, BackboneSettings, BackboneSpec
from depthcore.models.backbones.zoo.registry import register

LAYERS = block_layers(12)
FACTS = BackboneFacts(layers=LAYERS, class_token=True, text=False, zeroshot_layer=None)
CITATION = "Oquab et al., DINOv2: Learning Robust Visual Features without Supervision, TMLR 2024 (arXiv:2304.07193)"
# backbone name -> timm model (ViT-S/14: 384 channels, ViT-B/14: 768; 12 blocks each)
VARIANTS = {
    "dinov2_vits14": "vit_small_patch14_dinov2.lvd142m",
    "dinov2_vitb14": "vit_base_patch14_dinov2.lvd142m",
}


class DinoV2Settings(BackboneSettings):
    """``backbones.dinov2_<variant>``: pretrained ('official' | 'none' | a file), init_seed, layers
    (block1..block12)."""

    valid_layers: ClassVar[tuple[str, ...]] = LAYERS


MASK_TOKEN = "mask_token"  # Meta's checkpoints: the iBOT mask embedding (1 x C), unused at inference; timm drops it


def convert_state_dict(state) -> dict[str, torch.Tensor]:
    """timm's state dict of a DINOv2 checkpoint: timm's model.safetensors as it is; Meta's
    ``dinov2_vit*14_pretrain.pth`` (DinoVisionTransformer: timm's key names plus ``mask_token``) without
    ``mask_token``, as timm's own conversion does. Idempotent."""
    return {k: v for k, v in timm_state_dict(state).items() if k != MASK_TOKEN}


def accepted_files(name: str, model: str) -> tuple[str, ...]:
    """The DINOv2 files variant ``name`` (timm ``model``) reads."""
    arch = model.split(".")[0]
    return (
        f"timm's model.safetensors from huggingface.co/timm/{model} (what pretrained: official downloads)",
        f"Meta's {name}_pretrain.pth (dl.fbaipublicfiles.com/dinov2/{name}/, what DINOv2's README and torch.hub give)",
        f"a state dict in timm's names of {arch} (e.g. a file the fetch_backbone stage wrote)",
    )


def _register(name: str, model: str) -> None:
    settings = type(
        f"{name.title().replace('_', '')}Settings", (DinoV2Settings,), {"backbone": name, "__module__": __name__}
    )
    spec = BackboneSpec(
        model=model,
        facts=FACTS,
        releases=(hf_timm_release(model, citation=CITATION),),
        convert_state_dict=convert_state_dict,
        accepted=accepted_files(name, model),
    )

    @register(name, config=settings, spec=spec)
    def build(*, cfg: DinoV2Settings, state_dict: dict[str, torch.Tensor] | None = None, clip=None) -> TimmViTBackbone:
        """The frozen DINOv2 variant; ``state_dict`` None: seeded informative random weights (``cfg.init_seed``)."""
        return build_timm_vit(model=model, name=name, cfg=cfg, state_dict=state_dict)


for _name, _model in VARIANTS.items():
    _register(_name, _model)
