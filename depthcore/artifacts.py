"""The small safetensors artifacts adapters are built from, written by the feature stages: the DepthCLIP head
(``clip_head``: prompt embeddings, bins, attention-pool projections) and CLIP's frozen stem + layer1
(``clip_shallow``). Deterministic bytes, no pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from depthcore.errors import DepthcoreError
from depthcore.io import read_safetensors, sha256_of, write_safetensors_atomic
from depthcore.models.heads.depthclip import PROJECTION_KEYS, DepthCLIPHead


class ArtifactError(DepthcoreError, ValueError):
    """An artifact is missing or unreadable; the message names the stage that rebuilds it."""


def save_head(path: Path | str, head: DepthCLIPHead, *, weights: dict[str, Any]) -> Path:
    """The head as safetensors (deterministic bytes): its buffers, with temperature, dense mode and the
    CLIP weights manifest as metadata."""
    meta = {"temperature": head.temperature, "dense": head.dense, "weights": weights}
    tensors = {name: value.contiguous() for name, value in head.state_dict().items()}
    return write_safetensors_atomic(path, tensors, meta)


def _read_head(path: Path | str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a head artifact; ArtifactError naming the stage that rebuilds it."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist: run `dvc repro clip_head`")
    try:
        meta, tensors = read_safetensors(path)
    except Exception as exc:
        raise ArtifactError(f"{path} is not a readable head artifact ({exc}): rerun `dvc repro clip_head`") from exc
    if not meta:
        raise ArtifactError(f"{path} is not a head artifact (no depthcore metadata): rerun `dvc repro clip_head`")
    return meta, tensors


def head_identity(path: Path | str) -> dict[str, Any]:
    """What a zero-shot map depends on besides the image: the head file's SHA-256 and the manifest of the CLIP
    weights that encoded its prompts (whose image tower computes the layer4 it reads). Recorded in
    ``zeroshot.zarr``'s attrs, so a checkpoint that reads zero-shot depth knows which head and CLIP made it."""
    meta, _ = _read_head(path)
    return {"sha256": sha256_of(path), "weights": meta["weights"]}


def load_head(path: Path | str) -> DepthCLIPHead:
    """The head saved by :func:`save_head` (CPU, float32)."""
    meta, tensors = _read_head(path)
    projections = {key: tensors[key] for key in PROJECTION_KEYS if key in tensors} or None
    return DepthCLIPHead(
        text_embeddings=tensors["text"],
        bins=tensors["bins"],
        temperature=meta["temperature"],
        dense=meta["dense"],
        projections=projections,
    )


def save_shallow(path: Path | str, state: dict[str, torch.Tensor]) -> Path:
    """The stem and layer1 state dict (:func:`depthcore.models.backbones.clip_shallow.shallow_state_dict`) as a
    small safetensors artifact (deterministic bytes)."""
    return write_safetensors_atomic(path, {k: v.contiguous() for k, v in state.items()}, None)


def load_shallow(path: Path | str) -> dict[str, torch.Tensor]:
    """The state dict :func:`save_shallow` wrote (input of ``clip_shallow.build_clip_shallow``)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist: run `dvc repro clip_features`")
    return read_safetensors(path)[1]
