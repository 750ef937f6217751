"""NVIDIA's C-RADIOv3 ViT-B/16 (timm ``naflexvit_base_patch16_radio_v3.c_radio``): blocks block1..block12 (768
channels) with class token (the first of RADIO's summary tokens; the other summary tokens and the registers are
dropped).

Input conditioning: RADIO takes RGB in [0, 1] and normalises inside the model (``InputConditioner``: OpenAI CLIP's
mean 0.48145466, 0.4578275, 0.40821073 / std 0.26862954, 0.26130258, 0.27577711, NVlabs/RADIO radio/
input_conditioner.py); timm moves that step out of the model, so :meth:`CRadioV3Backbone.preprocess` applies it.
The 416 x 544 crop is a multiple of 16 (RADIO's ``min_resolution_step`` for a ViT without windows): no resize, a
26 x 34 grid.

Position embedding, RADIO's own (CPE): a 128 x 128 table resized bilinearly (align_corners True, as C-RADIOv3-B was
released, no antialiasing) to a square of the grid's longest side, then its top-left h x w cells kept (34 x 34 ->
26 x 34 rows x columns). timm's NaFlexVit does exactly this (``pos_embed_ar_preserving``); timm's classic
``vit_base_patch16_radio_v3`` instead holds the table pre-resized to 32 x 32 (512 px) and stretches it to the grid,
which differs from RADIO at 416 x 544, so it is not used here.

Weights: timm's Hugging Face ``model.safetensors`` (tag ``official``), NVIDIA's ``nvidia/C-RADIOv3-B``
``model.safetensors`` (tag ``nvidia``; the whole RADIO model: its backbone read, the adaptors dropped), converted by
:func:`convert_state_dict`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn

from depthcore.models.backbones.zoo._vit import (
    block_layers,
    hf_timm_release,
    informative_timm_init,
    timm_block_maps,
)
from depthcore.models.backbones.zoo.base import (
    CROP_SIZE,
    BackboneError,
    BackboneFacts,
    BackboneSettings,
    BackboneSpec,
    FrozenBackbone,
    LayerSpec,
    WeightsRelease,
    instantiate,
    unwrap_state_dict,
)
from depthcore.models.backbones.zoo.registry import register

NAME = "cradiov3_vitb16"
MODEL = "naflexvit_base_patch16_radio_v3.c_radio"
PATCH = 16
DEPTH = 12
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # RADIO's input conditioner (OpenAI CLIP's statistics)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LAYERS = block_layers(DEPTH)
TOKEN_INIT_STD = 0.3  # summary / register tokens under the informative random init (block1_cls std ~0.37)
FACTS = BackboneFacts(layers=LAYERS, class_token=True, text=False, zeroshot_layer=None)
CITATION = (
    "Heinrich et al., RADIOv2.5: Improved Baselines for Agglomerative Vision Foundation Models, CVPR 2025 "
    "(arXiv:2412.07679); Ranzinger et al., AM-RADIO, CVPR 2024 (arXiv:2312.06709)"
)
LICENCE = "NVIDIA Open Model License (https://developer.download.nvidia.com/licenses/nvidia-open-model-license-agreement-june-2024.pdf)"
NVIDIA_REPO = "nvidia/C-RADIOv3-B"
RELEASES: tuple[WeightsRelease, ...] = (
    dataclasses.replace(hf_timm_release(MODEL, citation=CITATION), licence=LICENCE),
    WeightsRelease(
        tag="nvidia",
        url=f"https://huggingface.co/{NVIDIA_REPO}/resolve/main/model.safetensors",
        filename="C-RADIOv3-B.safetensors",
        sha256=None,
        format="safetensors",
        licence=LICENCE,
        citation=CITATION,
    ),
)


class CRadioV3ViTB16Settings(BackboneSettings):
    """``backbones.cradiov3_vitb16``: pretrained ('official' | 'nvidia' | 'none' | a file), init_seed, layers
    (block1..block12)."""

    valid_layers: ClassVar[tuple[str, ...]] = LAYERS
    backbone: ClassVar[str] = NAME


class CRadioV3Backbone(FrozenBackbone):
    """Frozen C-RADIOv3 ViT-B/16 (timm NaFlexVit); see the module docstring for the input and geometry."""

    name = NAME
    class_token, text, zeroshot_layer = FACTS.class_token, FACTS.text, FACTS.zeroshot_layer

    def __init__(self, model: nn.Module):
        super().__init__()
        self.vit = model
        self.input_size = CROP_SIZE
        self.mean, self.std = CLIP_MEAN, CLIP_STD
        grid = (CROP_SIZE[0] // PATCH, CROP_SIZE[1] // PATCH)
        self.layer_specs = {layer: LayerSpec(int(model.embed_dim), PATCH, grid) for layer in LAYERS}
        self.freeze()

    @property
    def library_model(self) -> nn.Module:
        return self.vit

    def forward_features(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """B x 3 x H x W (multiples of 16) -> {block<k>: B x 768 x H/16 x W/16, block<k>_cls: B x 768}."""
        self.check_layers(layers)
        self.check_input(x, PATCH)
        return timm_block_maps(self.vit, x.to(self.vit.embeds.proj.weight.dtype), layers, norm=False)


# NVIDIA's RADIOModel (hf_model.py of nvidia/C-RADIOv3-B): the backbone under radio_model.model.*, the input
# conditioner, summary indices and teacher adaptors beside it
RADIO_MODEL = "radio_model.model."
CONDITIONER = "radio_model.input_conditioner."
EMBEDDER, POS_EMBED, CLS_TOKENS = (
    "patch_generator.embedder.weight",
    "patch_generator.pos_embed",
    "patch_generator.cls_token.token",
)


def convert_state_dict(state) -> dict[str, torch.Tensor]:
    """timm's NaFlexVit state dict of C-RADIOv3-B. timm's model.safetensors: as it is. NVIDIA's model.safetensors
    (``radio_model.*``), as timm's own conversion (``_convert_radio`` then NaFlexVit's ``checkpoint_filter_fn``)
    does: the patch embedder (C x 3*16*16, channels first) -> ``embeds.proj.weight`` (channels last: C x 16*16*3)
    with a zero bias, the 128*128 position table -> 1 x 128 x 128 x C, the summary/register tokens -> ``cls_token``
    (the first) and ``reg_token`` (the rest), ``blocks.*`` as they are (``grandma`` -> ``gamma``); the input
    conditioner (checked to be OpenAI CLIP's statistics, which preprocess applies), summary indices and adaptors
    dropped. Idempotent."""
    state = unwrap_state_dict(state)
    if not any(key.startswith(RADIO_MODEL) for key in state):
        return state
    _check_conditioner(state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith(RADIO_MODEL):
            continue
        key = key.removeprefix(RADIO_MODEL)
        if key == EMBEDDER:
            patch = math.isqrt(value.shape[1] // 3)
            out["embeds.proj.weight"] = value.reshape(value.shape[0], 3, patch, patch).permute(0, 2, 3, 1).flatten(1)
            out["embeds.proj.bias"] = value.new_zeros(value.shape[0])
        elif key == POS_EMBED:
            side = math.isqrt(value.shape[1])
            if side * side != value.shape[1]:
                raise BackboneError(f"{RADIO_MODEL}{POS_EMBED} has {value.shape[1]} positions, not a square grid")
            out["embeds.pos_embed"] = value.reshape(1, side, side, value.shape[-1])
        elif key == CLS_TOKENS:
            out["embeds.cls_token"] = value[None, :1]
            out["embeds.reg_token"] = value[None, 1:]
        elif key.startswith("blocks."):
            out[key.replace(".grandma", ".gamma")] = value
    return out


def _check_conditioner(state: dict[str, torch.Tensor]) -> None:
    """BackboneError unless NVIDIA's input conditioner (where the file has one) is OpenAI CLIP's statistics."""
    for suffix, expected in (("norm_mean", CLIP_MEAN), ("norm_std", CLIP_STD)):
        value = state.get(CONDITIONER + suffix)
        if value is not None and not torch.allclose(value.float().flatten(), torch.tensor(expected), atol=1e-6):
            raise BackboneError(
                f"{CONDITIONER}{suffix} is {value.flatten().tolist()}, not RADIO's {list(expected)}: preprocess would "
                "normalise this model's input wrongly"
            )


def informative_init(vit: nn.Module) -> None:
    """:func:`~depthcore.models.backbones.zoo._vit.informative_timm_init`, and the summary and register tokens drawn
    N(0, TOKEN_INIT_STD^2) (timm draws them ~1e-6: the class token would start near zero and stay below 0.2 through
    the first block; drawn like the patch tokens, ~1, it would hardly follow the image there). Call seeded."""
    informative_timm_init(vit)
    nn.init.normal_(vit.embeds.cls_token, std=TOKEN_INIT_STD)
    nn.init.normal_(vit.embeds.reg_token, std=TOKEN_INIT_STD)


ACCEPTED = (
    f"timm's model.safetensors from huggingface.co/timm/{MODEL} (what pretrained: official downloads)",
    f"NVIDIA's model.safetensors from huggingface.co/{NVIDIA_REPO} (what pretrained: nvidia downloads; the whole "
    "RADIO model, its backbone read)",
    "a state dict in timm's names of naflexvit_base_patch16_radio_v3 (e.g. a file the fetch_backbone stage wrote); "
    "not timm's vit_base_patch16_radio_v3 file, whose 32 x 32 position table cannot give RADIO's",
)


@register(
    NAME,
    config=CRadioV3ViTB16Settings,
    spec=BackboneSpec(
        model=MODEL, facts=FACTS, releases=RELEASES, convert_state_dict=convert_state_dict, accepted=ACCEPTED
    ),
)
def build(
    *, cfg: CRadioV3ViTB16Settings, state_dict: dict[str, torch.Tensor] | None = None, clip=None
) -> CRadioV3Backbone:
    """The frozen C-RADIOv3 ViT-B/16; ``state_dict`` (timm's names, :func:`convert_state_dict`) None: seeded
    informative random weights (``cfg.init_seed``; :func:`informative_init`)."""
    import timm

    def create(device: str) -> nn.Module:
        with torch.device(device):
            return timm.create_model(MODEL.split(".")[0], pretrained=False)

    return CRadioV3Backbone(
        instantiate(create, backbone=NAME, init_seed=cfg.init_seed, state_dict=state_dict, init=informative_init)
    )
