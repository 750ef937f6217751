"""DINOv3 ViTs with patch 16 (timm ``vit_*_patch16_dinov3.lvd1689m``, timm's Eva with RoPE and 4 register tokens):
blocks block1..block<depth> with class token, the registers dropped; one entry per variant in :data:`VARIANTS`.

Input: the 416 x 544 crop is already a multiple of the patch (a 26 x 34 grid; the bilinear resize of
:class:`~depthcore.models.backbones.zoo._vit.TimmViTBackbone` is the identity), normalised with ImageNet statistics
(DINOv3's ``IMAGENET_DEFAULT_MEAN`` / ``_STD``, dinov3/eval/depth/config.py). RoPE positions follow the input's grid
(no table to resample). ``final_norm`` True (DINOv3's depth protocol: ``DecoderConfig.use_backbone_norm = True``
in dinov3/eval/depth/models/__init__.py, applied as ``get_intermediate_layers(..., norm=True)``) returns every
block with the backbone's final LayerNorm applied to all its tokens, class token included.

Weights: timm's Hugging Face ``model.safetensors`` (tag ``official``) or Meta's ``dinov3_vit*16_pretrain_lvd1689m-
<hash>.pth`` (a file under ``weights/backbone/``), converted by :func:`convert_state_dict`.
"""

from __future__ import annotations

import dataclasses

import torch

from depthcore.models.backbones.zoo._vit import (
    TimmViTBackbone,
    block_layers,
    build_timm_vit,
    hf_timm_release,
    timm_state_dict,
)
from depthcore.models.backbones.zoo.base import BackboneError, BackboneFacts, BackboneSettings, BackboneSpec
from depthcore.models.backbones.zoo.registry import register

CITATION = "Simeoni et al., DINOv3, arXiv:2508.10104 (2025)"
LICENCE = "DINOv3 License (https://ai.meta.com/resources/models-and-libraries/dinov3-license/)"
FINAL_NORM = True  # DINOv3's depth heads read the blocks after the final LayerNorm (use_backbone_norm = True)
# backbone name -> (timm model, blocks, Meta's file hash); ViT-S/16 384 channels, ViT-B/16 768, ViT-L/16 1024
VARIANTS = {
    "dinov3_vits16": ("vit_small_patch16_dinov3.lvd1689m", 12, "08c60483"),
    "dinov3_vitb16": ("vit_base_patch16_dinov3.lvd1689m", 12, "73cec8be"),
    "dinov3_vitl16": ("vit_large_patch16_dinov3.lvd1689m", 24, "8aa4cbdd"),
}


class DinoV3Settings(BackboneSettings):
    """``backbones.dinov3_<variant>``: pretrained ('official' | 'none' | a file), init_seed, layers
    (block1..block<depth>), final_norm (True: the blocks after the final LayerNorm, DINOv3's depth protocol)."""

    final_norm: bool


# Meta's DinoVisionTransformer (dinov3/models/vision_transformer.py) -> timm's Eva: the names that differ
META_RENAMES = ((".ls1.gamma", ".gamma_1"), (".ls2.gamma", ".gamma_2"))
META_STORAGE, TIMM_REGISTERS = "storage_tokens", "reg_token"
META_DROPPED = ("mask_token", "rope_embed.periods")  # the iBOT mask embedding; RoPE periods (timm recomputes them)
QKV_BIAS, QKV_BIAS_MASK = ".attn.qkv.bias", ".attn.qkv.bias_mask"


def convert_state_dict(state) -> dict[str, torch.Tensor]:
    """timm's Eva state dict of a DINOv3 ViT checkpoint. timm's model.safetensors: as it is. Meta's
    ``dinov3_vit*16_pretrain_lvd1689m-*.pth`` (DinoVisionTransformer): ``storage_tokens`` -> ``reg_token``,
    ``blocks.*.ls{1,2}.gamma`` -> ``gamma_{1,2}``, ``mask_token`` and ``rope_embed.periods`` dropped, and the qkv
    bias dropped (timm's ``vit_*_patch16_dinov3`` has none: the released S/B/L biases are zero; the k part is
    masked by ``bias_mask`` anyway), as timm's own ``checkpoint_filter_fn`` (timm/models/eva.py) does. A file whose
    q or v bias is not zero is refused (it needs timm's ``_qkvb`` variant). Idempotent."""
    state = timm_state_dict(state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in META_DROPPED or key.endswith(QKV_BIAS_MASK):
            continue
        if key.endswith(QKV_BIAS):
            effective = value * state.get(key + "_mask", torch.ones_like(value))
            if torch.count_nonzero(effective):
                raise BackboneError(
                    f"{key} is not zero: this DINOv3 checkpoint needs a qkv bias, which timm's vit_*_patch16_dinov3 "
                    "lacks; use one of the released LVD-1689M ViT-S/B/L files"
                )
            continue
        if key == META_STORAGE:
            key = TIMM_REGISTERS
        for old, new in META_RENAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


def accepted_files(name: str, model: str, file_hash: str) -> tuple[str, ...]:
    """The DINOv3 files variant ``name`` (timm ``model``) reads."""
    arch = model.split(".")[0]
    return (
        f"timm's model.safetensors from huggingface.co/timm/{model} (what pretrained: official downloads)",
        f"Meta's {name}_pretrain_lvd1689m-{file_hash}.pth (the URL Meta e-mails after the access request on "
        "ai.meta.com/resources/models-and-libraries/dinov3-downloads/; what DINOv3's torch.hub loads)",
        f"a state dict in timm's names of {arch} (e.g. a file the fetch_backbone stage wrote)",
    )


def _register(name: str, model: str, depth: int, file_hash: str) -> None:
    layers = block_layers(depth)
    settings = type(
        f"{name.title().replace('_', '')}Settings",
        (DinoV3Settings,),
        {"backbone": name, "valid_layers": layers, "__module__": __name__},
    )
    spec = BackboneSpec(
        model=model,
        facts=BackboneFacts(layers=layers, class_token=True, text=False, zeroshot_layer=None),
        releases=(dataclasses.replace(hf_timm_release(model, citation=CITATION), licence=LICENCE),),
        convert_state_dict=convert_state_dict,
        accepted=accepted_files(name, model, file_hash),
    )

    @register(name, config=settings, spec=spec)
    def build(*, cfg: DinoV3Settings, state_dict: dict[str, torch.Tensor] | None = None, clip=None) -> TimmViTBackbone:
        """The frozen DINOv3 variant; ``state_dict`` None: seeded informative random weights (``cfg.init_seed``).
        ``cfg.final_norm`` (absent where only the weights are checked: :data:`FINAL_NORM`)."""
        final_norm = getattr(cfg, "final_norm", FINAL_NORM)
        return build_timm_vit(model=model, name=name, cfg=cfg, state_dict=state_dict, final_norm=final_norm)


for _name, (_model, _depth, _hash) in VARIANTS.items():
    _register(_name, _model, _depth, _hash)
