"""The ``clip_head`` stage: the DepthCLIP head's prompts encoded once by CLIP's text tower."""

from __future__ import annotations

from pathlib import Path

from depthcore.artifacts import save_head, save_no_head
from depthcore.models.backbones.clip import ClipBackbone
from depthcore.models.heads.depthclip import CHANNEL_STEP, DepthCLIPHead, HeadError, depth_prompts
from depthcore.weights.backbone import load_backbone
from depthcore.weights.manifest import read_manifest


def build_depthclip_head(*, backbone: ClipBackbone, cfg) -> DepthCLIPHead:
    """The head for ``cfg`` (the depthclip section) with its prompts encoded by ``backbone``'s text tower."""
    channels = backbone.layer_specs["layer4"].channels
    if cfg.dense == "depthclip" and channels // CHANNEL_STEP != backbone.embed_dim:
        raise HeadError(
            f"params 'depthclip.dense': 'depthclip' keeps every second of the {channels} layer4 channels, which "
            f"does not give the {backbone.embed_dim}-d text space of {backbone.model_name}; use dense: maskclip "
            "or an RN50 model"
        )
    return DepthCLIPHead(
        text_embeddings=backbone.encode_text(depth_prompts(cfg)).cpu(),
        bins=cfg.bins,
        temperature=cfg.temperature,
        dense=cfg.dense,
        projections=backbone.attnpool_projections() if cfg.dense == "maskclip" else None,
    )


def build_vit_head(*, backbone, cfg) -> DepthCLIPHead:
    """The head of a ViT CLIP zoo backbone: its prompts encoded by its text tower, reading the cached ``dense``
    layer (MaskCLIP's value path, already in the text space); ``depthclip.dense`` is a ResNet CLIP's choice."""
    return DepthCLIPHead(
        text_embeddings=backbone.encode_text(depth_prompts(cfg)).cpu(),
        bins=cfg.bins,
        temperature=cfg.temperature,
        dense="embedded",
    )


def write_head(weights_dir: Path | str, cfg, out: Path | str) -> Path:
    """The clip_head stage: encode the prompts of ``cfg`` (the depthclip section) with the CLIP of the
    ``fetch_backbone`` folder and save the head artifact; for a backbone without a text tower, an artifact saying so
    (the zero-shot stages then predict nothing)."""
    backbone = load_backbone(weights_dir)
    weights = read_manifest(weights_dir, stage="fetch_backbone")
    if isinstance(backbone, ClipBackbone):
        return save_head(out, build_depthclip_head(backbone=backbone, cfg=cfg), weights=weights, layer="layer4")
    if not backbone.text:
        return save_no_head(out, weights=weights)
    return save_head(out, build_vit_head(backbone=backbone, cfg=cfg), weights=weights, layer=backbone.zeroshot_layer)
