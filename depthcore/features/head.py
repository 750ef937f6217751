"""The ``clip_head`` stage: the DepthCLIP head's prompts encoded once by CLIP's text tower."""

from __future__ import annotations

from pathlib import Path

from depthcore.artifacts import save_head
from depthcore.models.backbones.clip import ClipBackbone
from depthcore.models.heads.depthclip import CHANNEL_STEP, DepthCLIPHead, HeadError, depth_prompts
from depthcore.weights.clip import load_clip_backbone
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


def write_head(weights_dir: Path | str, cfg, out: Path | str) -> Path:
    """The clip_head stage: encode the prompts of ``cfg`` (the depthclip section) with the CLIP of the
    ``fetch_clip`` folder and save the head artifact."""
    head = build_depthclip_head(backbone=load_clip_backbone(weights_dir), cfg=cfg)
    return save_head(out, head, weights=read_manifest(weights_dir, stage="fetch_clip"))
