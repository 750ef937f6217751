"""Perception Encoder Core B/16 (open_clip ``PE-Core-B-16``, timm ``vit_pe_core_base_patch16_224``, 224 x 224):
blocks block1..block12 (768 channels, with class token) and ``dense`` (1024 channels, the joint image-text space),
the layer the DepthCLIP head reads; its CLIP text tower (24 blocks, width 1024, 32 tokens) embeds the prompts with
open_clip's bundled CLIP BPE tokenizer (``SimpleTokenizer``: works offline).

Geometry: the 416 x 544 crop, not resized (a 26 x 34 grid of 16-pixel patches), normalised with PE's statistics
(mean = std = 0.5: open_clip's ``_pecfg``). As PE's own code does (facebookresearch/perception_models
core/vision_encoder/pe.py, ``VisionTransformer._sample_abs_posemb`` and ``Rope2D.update_grid``): the 14 x 14
absolute position table is resized bilinearly (align_corners False, no antialiasing; the class token's entry kept),
and the 2-D RoPE uses the integer patch positions (+1: the class token is position 0), not rescaled to the 14 x 14
pretraining grid (timm's ``ref_feat_shape``, which is removed here). At 224 x 224 both are the identity.
``dense``: the attention pool's value path per token, then the 768 -> 1024 head
(:mod:`depthcore.models.backbones.zoo._map`).

Weights: open_clip's Hugging Face file (timm/PE-Core-B-16, tag ``official``, open_clip's names), or Meta's own
``PE-Core-B16-224.pt`` (facebook/PE-Core-B16-224, tag ``meta``): perception_models' ``CLIP`` state dict, whose text
tower is the CLIP module itself (top-level ``token_embedding``, ``transformer.resblocks.*``, ``ln_final``,
``text_projection``, ``positional_embedding``) and whose image tower is ``visual.*`` in OpenAI-CLIP names
(``conv1``, ``class_embedding``, ``ln_pre``, ``transformer.resblocks.*``, ``ln_post``, ``attn_pool.{probe, attn,
layernorm, mlp}``, ``proj`` 768 x 1024); converted to open_clip's names as timm's ``_convert_pe`` maps the image
tower (timm/models/eva.py) and with ``text.`` before every text key.
"""

from __future__ import annotations

import re
from typing import ClassVar

import torch
import torch.nn.functional as F

from depthcore.models.backbones.clip import clip_tokenizer
from depthcore.models.backbones.zoo._map import (
    LAYERS,
    OPEN_CLIP_TEXT_PREFIX,
    VISUAL_PREFIX,
    MapClipBackbone,
    MapVariant,
    build_map_backbone,
    hf_open_clip_release,
    open_clip_keys,
)
from depthcore.models.backbones.zoo.base import (
    BackboneFacts,
    BackboneSettings,
    BackboneSpec,
    WeightsRelease,
    unwrap_state_dict,
)
from depthcore.models.backbones.zoo.registry import register

NAME = "pe_core_b16"
MODEL = "PE-Core-B-16"
HF_REPO = "timm/PE-Core-B-16"  # open_clip's pretrained entry ('meta', hf_hub) of the model
META_REPO = "facebook/PE-Core-B16-224"
META_FILE = "PE-Core-B16-224.pt"
TIMM_IMAGE_REPO = "timm/vit_pe_core_base_patch16_224.fb"
PE_MEAN = PE_STD = (0.5, 0.5, 0.5)  # open_clip _pecfg
FACTS = BackboneFacts(layers=LAYERS, class_token=True, text=True, zeroshot_layer=LAYERS[-1])
CITATION = (
    "Bolya et al., Perception Encoder: The best visual embeddings are not at the output of the network, 2025 "
    "(arXiv:2504.13181)"
)
RELEASES: tuple[WeightsRelease, ...] = (
    hf_open_clip_release(HF_REPO, MODEL, citation=CITATION),
    WeightsRelease(
        tag="meta",
        url=f"https://huggingface.co/{META_REPO}/resolve/main/{META_FILE}",
        filename=META_FILE,
        sha256=None,  # announced by the hub (X-Linked-Etag)
        format="torch",
        licence="Apache-2.0",
        citation=CITATION,
    ),
)


def resample_bilinear(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """1 x C x 14 x 14 -> 1 x C x h x w, bilinear, align_corners False, no antialiasing (PE's own resize)."""
    return F.interpolate(table.float(), size=grid, mode="bilinear", align_corners=False)


VARIANT = MapVariant(name=NAME, model=MODEL, mean=PE_MEAN, std=PE_STD, resample=resample_bilinear, absolute_rope=True)


class PeCoreB16Settings(BackboneSettings):
    """``backbones.pe_core_b16``: pretrained ('official' | 'meta' | 'none' | a file), init_seed, layers
    (block1..12, dense)."""

    valid_layers: ClassVar[tuple[str, ...]] = LAYERS
    backbone: ClassVar[str] = NAME


# Meta's image-tower names -> open_clip's (timm's), applied in order to the key without "visual." (the facts of
# timm's _convert_pe, timm/models/eva.py; the pool's first, as its out_proj / mlp would match the blocks' rules);
# a leading-dot rule applies anywhere, the others at the start; the pool's packed in_proj is split below.
META_VISUAL_RENAMES = (
    ("attn_pool.attn.out_proj.", "attn_pool.proj."),
    ("attn_pool.layernorm.", "attn_pool.norm."),
    ("attn_pool.mlp.c_fc.", "attn_pool.mlp.fc1."),
    ("attn_pool.mlp.c_proj.", "attn_pool.mlp.fc2."),
    ("attn_pool.probe", "attn_pool.latent"),
    ("conv1.", "patch_embed.proj."),
    ("transformer.resblocks.", "blocks."),
    ("ln_pre.", "norm_pre."),
    ("ln_post.", "norm."),
    (".ln_1.", ".norm1."),
    (".ln_2.", ".norm2."),
    (".attn.in_proj_", ".attn.qkv."),
    (".attn.out_proj.", ".attn.proj."),
    (".mlp.c_fc.", ".mlp.fc1."),
    (".mlp.c_proj.", ".mlp.fc2."),
)
META_MARKER = "visual.conv1.weight"  # only Meta's layout has it
META_WRAPPERS = ("weights.",)  # perception_models' load_ckpt also unwraps a "weights" entry


def convert_meta(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta's PE ``CLIP`` state dict -> open_clip's names (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith("visual."):
            out[key if key == "logit_scale" else OPEN_CLIP_TEXT_PREFIX + key] = value
            continue
        name = key.removeprefix("visual.")
        if name.startswith("attn_pool.attn.in_proj_"):
            kind = name.rpartition("_")[2]  # weight | bias
            width = value.shape[0] // 3
            # copies: views of one storage could not be written to one safetensors file
            out[f"{VISUAL_PREFIX}attn_pool.q.{kind}"] = value[:width].clone()
            out[f"{VISUAL_PREFIX}attn_pool.kv.{kind}"] = value[width:].clone()
            continue
        if name == "proj":  # width x D, applied as x @ proj -> timm's head Linear (D x width) with a zero bias
            out[f"{VISUAL_PREFIX}head.weight"] = value.t()
            out[f"{VISUAL_PREFIX}head.bias"] = value.new_zeros(value.shape[1])
            continue
        if name == "class_embedding":
            out[f"{VISUAL_PREFIX}cls_token"] = value.reshape(1, 1, -1)
            continue
        if name == "positional_embedding":
            out[f"{VISUAL_PREFIX}pos_embed"] = value.unsqueeze(0)
            continue
        for old, new in META_VISUAL_RENAMES:
            name = name.replace(old, new) if old.startswith(".") else re.sub(f"^{re.escape(old)}", new, name)
        out[VISUAL_PREFIX + name] = value
    return out


def convert_state_dict(state) -> dict[str, torch.Tensor]:
    """open_clip's state dict of a PE-Core checkpoint: open_clip's file as it is, Meta's ``PE-Core-B16-224.pt``
    converted (:func:`convert_meta`). Idempotent. BackboneError for timm's image-tower-only file."""
    state = unwrap_state_dict(state)
    for wrapper in META_WRAPPERS:
        if all(key.startswith(wrapper) for key in state):
            state = {key.removeprefix(wrapper): value for key, value in state.items()}
    if META_MARKER in state:
        state = convert_meta(state)
    return open_clip_keys(state, backbone=NAME, timm_files=f"huggingface.co/{TIMM_IMAGE_REPO} model.safetensors")


ACCEPTED = (
    f"open_clip's open_clip_model.safetensors or open_clip_pytorch_model.bin from huggingface.co/{HF_REPO} "
    "(what pretrained: official downloads)",
    f"Meta's {META_FILE} from huggingface.co/{META_REPO} (what pretrained: meta downloads; perception_models' names)",
    f"a state dict in open_clip's names of {MODEL} (visual.trunk.*, text.*, logit_scale), e.g. a file the "
    "fetch_backbone stage wrote",
    f"(not timm's model.safetensors of huggingface.co/{TIMM_IMAGE_REPO}: the image tower alone, no text tower)",
)


def tokenize(prompts: list[str]) -> torch.Tensor:
    """K prompts -> K x 32 token ids: open_clip's tokenizer of PE-Core-B-16 (its bundled CLIP BPE vocabulary)."""
    return clip_tokenizer(MODEL)(prompts)


@register(
    NAME,
    config=PeCoreB16Settings,
    spec=BackboneSpec(model=MODEL, facts=FACTS, releases=RELEASES, convert_state_dict=convert_state_dict,
                      accepted=ACCEPTED),
)  # fmt: skip
def build(*, cfg: PeCoreB16Settings, state_dict: dict[str, torch.Tensor] | None = None, clip=None) -> MapClipBackbone:
    """The frozen PE-Core B/16 (image and text towers); ``state_dict``: open_clip's names; None: seeded informative
    random weights (``cfg.init_seed``)."""
    return build_map_backbone(
        VARIANT, init_seed=cfg.init_seed, state_dict=state_dict, tokenize=tokenize, source=str(cfg.pretrained)
    )
