"""Reading a ``fetch_backbone`` folder back: the state dict it holds and the frozen backbone it describes
(the folder is written by :mod:`depthcore.weights.fetch_clip`; everything downstream reads its manifest,
never ``clip.pretrained`` itself)."""

from __future__ import annotations

from pathlib import Path

import torch

from depthcore.io import UnsafeFileError, load_plain_torch
from depthcore.models.backbones.clip import OPENAI_METADATA_KEYS, ClipBackbone, ClipError, build_clip_backbone
from depthcore.weights.manifest import read_manifest, weights_file


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A CLIP state dict from a plain checkpoint (safetensors, or torch.load with weights_only=True);
    unwraps 'state_dict' and 'module.' and drops OpenAI's metadata entries."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = load_plain_torch(path)
        except UnsafeFileError as exc:
            raise ClipError(
                f"{exc}. (OpenAI's original TorchScript .pt files are converted by `clip.pretrained: openai`, "
                "the fetch_backbone stage.)"
            ) from None
        except Exception as exc:
            raise ClipError(f"{path} is not a readable state dict ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ClipError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in OPENAI_METADATA_KEYS}


def load_clip_backbone(weights_dir: Path | str) -> ClipBackbone:
    """The backbone described by the ``fetch_backbone`` manifest in ``weights_dir``."""
    manifest = read_manifest(weights_dir, stage="fetch_backbone")
    path = weights_file(weights_dir, manifest, stage="fetch_backbone")
    if path is None:
        return build_clip_backbone(model=manifest["model"], init_seed=manifest["init_seed"])
    return build_clip_backbone(model=manifest["model"], state_dict=load_state_dict(path), source=str(path))
