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


HEAD_LAYER = "layer4"  # the cached layer a head reads unless its artifact names another (a ViT CLIP's "dense")


def save_head(path: Path | str, head: DepthCLIPHead, *, weights: dict[str, Any], layer: str = HEAD_LAYER) -> Path:
    """The head as safetensors (deterministic bytes): its buffers, with temperature, dense mode, the cached
    ``layer`` it reads (only recorded when not layer4) and the CLIP weights manifest as metadata."""
    meta = {"temperature": head.temperature, "dense": head.dense, "weights": weights}
    meta |= {"layer": layer} if layer != HEAD_LAYER else {}
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


def save_no_head(path: Path | str, *, weights: dict[str, Any]) -> Path:
    """The clip_head artifact of a backbone without a text tower: no tensors, the weights manifest naming it."""
    return write_safetensors_atomic(path, {}, {"weights": weights, "head": None})


def has_head(path: Path | str) -> bool:
    """Whether the clip_head artifact holds a head (False: its backbone has no text tower)."""
    meta, _ = _read_head(path)
    return meta.get("head", True) is not None


def head_layer(path: Path | str) -> str:
    """The cached layer the head of ``path`` reads (layer4, or a ViT CLIP's dense)."""
    return _read_head(path)[0].get("layer", HEAD_LAYER)


def load_head(path: Path | str) -> DepthCLIPHead:
    """The head saved by :func:`save_head` (CPU, float32); ArtifactError for a backbone without a text tower."""
    meta, tensors = _read_head(path)
    if meta.get("head", True) is None:
        backbone = (meta.get("weights") or {}).get("backbone")
        raise ArtifactError(
            f"{path}: backbone {backbone!r} has no text tower, so there is no DepthCLIP head: use a CLIP backbone "
            "(clip_rn50, clip_vitb16) for zero-shot depth and the adapters that read it"
        )
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


def save_no_shallow(path: Path | str, *, backbone: str) -> Path:
    """The clip_shallow artifact of a backbone without a CLIP ResNet stem: no tensors, the backbone named."""
    return write_safetensors_atomic(path, {}, {"backbone": backbone, "shallow": None})


def load_shallow(path: Path | str) -> dict[str, torch.Tensor]:
    """The state dict :func:`save_shallow` wrote (input of ``clip_shallow.build_clip_shallow``)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist: run `dvc repro features`")
    meta, tensors = read_safetensors(path)
    if not tensors:
        raise ArtifactError(
            f"{path}: backbone {(meta or {}).get('backbone')!r} has no CLIP ResNet stem and layer1 to compute: "
            "use backbone: clip_rn50 for an adapter that computes them (msa with shallow: compute)"
        )
    return tensors
