"""Segment Anything (SAM) models from the ``segment_anything`` package: image encoders work on 1024 x 1024 inputs."""

from __future__ import annotations

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from depthcore.errors import DepthcoreError

SAM_MODELS = ("vit_b", "vit_l", "vit_h")


class SamError(DepthcoreError, ValueError):
    """An unknown SAM model, or weights that are missing, unreadable or do not belong to ``sam.model``."""


def build_sam(*, model: str, init_seed: int) -> Sam:
    """The SAM ``model`` (vit_b, vit_l, vit_h) in eval mode on the CPU with seeded random weights (the global
    RNG is left untouched); load a checkpoint into it with :func:`depthcore.weights.sam.load_sam_checkpoint`."""
    if model not in SAM_MODELS:
        raise SamError(f"unknown SAM model {model!r}; valid models are {list(SAM_MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        sam = sam_model_registry[model]()
    return sam.eval()
