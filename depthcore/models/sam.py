"""Segment Anything (SAM) weights: the official checkpoints, seeded random init, and a strict builder.

``sam.pretrained`` is ``"official"`` (Meta's released checkpoint for ``sam.model``, downloaded by the
``fetch_weights`` stage into ``data/weights/``), ``"none"`` (the same architecture with seeded random
weights, for offline runs) or a path to a local checkpoint (a ``state_dict`` saved with ``torch.save``).
The architecture itself comes from the ``segment_anything`` package; image encoders always work on
1024 x 1024 inputs (SAM resizes the longest side and pads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from depthcore.config import SAM_MODELS, SamConfig
from depthcore.download import RemoteFile, fetch, sha256_of
from depthcore.errors import DepthcoreError

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
# Sizes and SHA-256 of the official releases (the hashes are the ones published alongside the
# checkpoints and pinned by several downstream projects, e.g. micro-sam's model registry).
SAM_CHECKPOINTS: dict[str, RemoteFile] = {
    "vit_b": RemoteFile(
        url=SAM_URL + "sam_vit_b_01ec64.pth",
        filename="sam_vit_b_01ec64.pth",
        size=375_042_383,
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "vit_l": RemoteFile(
        url=SAM_URL + "sam_vit_l_0b3195.pth",
        filename="sam_vit_l_0b3195.pth",
        size=1_249_524_607,
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_h": RemoteFile(
        url=SAM_URL + "sam_vit_h_4b8939.pth",
        filename="sam_vit_h_4b8939.pth",
        size=2_564_550_879,
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
}
PRETRAINED_OFFICIAL = "official"
PRETRAINED_NONE = "none"


class SamWeightsError(DepthcoreError, RuntimeError):
    """SAM weights are missing, unreadable, or do not belong to the chosen ``sam.model``."""


def _check_model(model: str) -> None:
    if model not in SAM_MODELS:
        raise SamWeightsError(f"unknown SAM model {model!r}; valid models are {list(SAM_MODELS)} (params 'sam.model')")


def fetch_sam_weights(cfg: SamConfig, weights_dir: Path | str, *, progress: bool = True) -> Path | None:
    """Make the weights ``cfg`` asks for available; returns their path, or None for random init.

    'official' downloads (resuming, verifying size and SHA-256) into ``weights_dir``; a local path
    is only checked to exist; 'none' needs nothing.
    """
    _check_model(cfg.model)
    if cfg.pretrained == PRETRAINED_NONE:
        return None
    if cfg.pretrained == PRETRAINED_OFFICIAL:
        return fetch(SAM_CHECKPOINTS[cfg.model], weights_dir, progress=progress)
    return _local_checkpoint(cfg.pretrained)


def _local_checkpoint(path: str) -> Path:
    local = Path(path)
    if not local.is_file():
        raise SamWeightsError(
            f"params 'sam.pretrained': {path!r} is neither 'official', 'none' nor an existing checkpoint file"
        )
    return local


def sam_weights_path(cfg: SamConfig, weights_dir: Path | str) -> Path | None:
    """Where the weights of ``cfg`` are (without downloading); None for random init.

    Raises SamWeightsError when official weights were not fetched yet.
    """
    _check_model(cfg.model)
    if cfg.pretrained == PRETRAINED_NONE:
        return None
    if cfg.pretrained == PRETRAINED_OFFICIAL:
        path = Path(weights_dir) / SAM_CHECKPOINTS[cfg.model].filename
        if not path.is_file():
            raise SamWeightsError(
                f"official SAM {cfg.model} weights not found at {path}; run the fetch_weights stage "
                "(`dvc repro fetch_weights`) or set sam.pretrained: none for random weights"
            )
        return path
    return _local_checkpoint(cfg.pretrained)


def sam_weights_identity(cfg: SamConfig, weights_dir: Path | str) -> dict[str, Any]:
    """JSON description of the weights ``cfg`` selects: model, tag, SHA-256 (None for random init)."""
    path = sam_weights_path(cfg, weights_dir)
    if path is None:
        return {"model": cfg.model, "pretrained": PRETRAINED_NONE, "init_seed": cfg.init_seed, "sha256": None}
    if cfg.pretrained == PRETRAINED_OFFICIAL:
        sha = SAM_CHECKPOINTS[cfg.model].sha256
    else:
        sha = sha256_of(path)
    return {"model": cfg.model, "pretrained": cfg.pretrained, "sha256": sha}


def build_sam(*, cfg: SamConfig, weights_dir: Path | str) -> Sam:
    """The SAM model of ``cfg.model`` in eval mode on the CPU, with the weights ``cfg.pretrained`` selects.

    Random init ('none') is seeded with ``cfg.init_seed`` and leaves the global RNG untouched.
    A checkpoint is loaded with ``weights_only=True`` and strictly: one that does not match the
    architecture raises SamWeightsError naming the model and the missing / unexpected keys.
    """
    _check_model(cfg.model)
    path = sam_weights_path(cfg, weights_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        model = sam_model_registry[cfg.model]()
    if path is not None:
        load_sam_checkpoint(model, path, model_name=cfg.model)
    return model.eval()


def load_sam_checkpoint(model: torch.nn.Module, path: Path | str, *, model_name: str) -> None:
    """Load the state_dict at ``path`` into ``model`` strictly (``weights_only=True``).

    Raises SamWeightsError naming ``model_name`` and the missing, unexpected and mis-shaped keys.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only errors all mean "not a usable checkpoint"
        raise SamWeightsError(f"could not read SAM checkpoint {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SamWeightsError(f"SAM checkpoint {path} is not a state_dict (a mapping of parameter names to tensors)")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        raise SamWeightsError(
            f"SAM checkpoint {path} does not match model {model_name!r} (params 'sam.model'): "
            f"{len(missing)} missing keys {_head(missing)}, {len(unexpected)} unexpected keys {_head(unexpected)}, "
            f"{len(mismatched)} shape mismatches {_head(mismatched)}. Choose the sam.model the checkpoint was "
            f"trained as ({list(SAM_MODELS)})."
        )
    model.load_state_dict(state, strict=True)


def _head(items: list[str], n: int = 5) -> list[str]:
    return items[:n] + ([f"... {len(items) - n} more"] if len(items) > n else [])
