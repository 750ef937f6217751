"""Reading a ``fetch_sam`` folder back: the SAM model its manifest describes, with its weights loaded strictly
(the folder is written by :mod:`depthcore.weights.fetch_sam`)."""

from __future__ import annotations

from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from depthcore.io import UnsafeFileError, load_plain_torch
from depthcore.models.backbones.sam import SAM_MODELS, SamError, build_sam
from depthcore.weights.manifest import read_manifest, weights_file


def load_sam(weights_dir: Path | str) -> Sam:
    """The SAM model the ``fetch_sam`` manifest in ``weights_dir`` describes, in eval mode on the CPU."""
    manifest = read_manifest(weights_dir, stage="fetch_sam")
    path = weights_file(weights_dir, manifest, stage="fetch_sam")
    sam = build_sam(model=manifest["model"], init_seed=manifest.get("init_seed", 0))
    if path is not None:
        load_sam_checkpoint(sam, path, model_name=manifest["model"])
    return sam


def load_sam_checkpoint(model: torch.nn.Module, path: Path | str, *, model_name: str) -> None:
    """Load the state_dict at ``path`` into ``model`` strictly (``weights_only=True``).

    Raises SamError naming ``model_name`` and the missing, unexpected and mis-shaped keys.
    """
    state = _checked_state(model, path, model_name=model_name)
    model.load_state_dict(state, strict=True)


def check_sam_checkpoint(path: Path | str, *, model_name: str) -> None:
    """SamError (as :func:`load_sam_checkpoint`) unless the file at ``path`` is a state dict of SAM ``model_name``:
    checked against the model built on the meta device (no weights drawn), so the fetch stage refuses a wrong
    file."""
    with torch.device("meta"):
        skeleton = sam_model_registry[model_name]()
    _checked_state(skeleton, path, model_name=model_name)


def _checked_state(model: torch.nn.Module, path: Path | str, *, model_name: str) -> dict[str, torch.Tensor]:
    try:
        state = load_plain_torch(path)
    except UnsafeFileError as exc:
        raise SamError(str(exc)) from None
    except Exception as exc:  # truncated or foreign files
        raise SamError(f"could not read SAM checkpoint {path} ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SamError(f"SAM checkpoint {path} is not a state_dict (a mapping of parameter names to tensors)")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        raise SamError(
            f"SAM checkpoint {path} does not match model {model_name!r} (params 'sam.model'): "
            f"{len(missing)} missing keys {_head(missing)}, {len(unexpected)} unexpected keys {_head(unexpected)}, "
            f"{len(mismatched)} shape mismatches {_head(mismatched)}. Choose the sam.model the checkpoint was "
            f"trained as ({list(SAM_MODELS)})."
        )
    return state


def _head(items: list[str], n: int = 5) -> list[str]:
    return items[:n] + ([f"... {len(items) - n} more"] if len(items) > n else [])
