"""One conversion path per backbone, from any published weights file to the state dict its builder takes.

Every route the fetch stage takes (a release downloaded by tag, a file placed under ``weights/backbone/``, a release
kept in ``data/weights/downloads/``) goes through :func:`convert_weights_file`: the file is read as tensors
(:mod:`depthcore.weights.formats`: no code run), converted by the backbone's ``convert_state_dict`` and checked by
building the backbone from it, then written as safetensors. Conversions are idempotent, so loading the written file
(:func:`state_dict_of`, every stage downstream) converts it again to the same state dict. A file that does not fit
is refused by the fetch stage, naming the file, what it looked like and the files the backbone accepts.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from depthcore.io import atomic_path, sha256_of
from depthcore.models.backbones.zoo.registry import BACKBONES, backbone_spec
from depthcore.weights.formats import WeightsFile, read_weights_file
from depthcore.weights.manifest import WeightsError

PAPER_BACKBONE = "clip_rn50"  # built from the clip section's model (any open_clip ModifiedResNet), not the zoo's cfg
RELEASE_ENTRIES = ("file", "sha256", "url", "source_format", "source_sha256")  # a fetched release's manifest entries


def state_dict_of(name: str, path: Path | str) -> dict[str, torch.Tensor]:
    """The state dict backbone ``name`` is built from, out of any weights file it accepts (converted; a file the
    fetch stage wrote converts to itself). WeightsError naming the file when it cannot be read or converted."""
    weights = read_weights_file(path)
    return _converted(name, weights, Path(path))


def checked_state_dict(name: str, model: str, path: Path | str) -> dict[str, torch.Tensor]:
    """:func:`state_dict_of`, checked by building backbone ``name`` (open_clip ``model`` for clip_rn50) from it:
    WeightsError naming the file, what it looked like and the files ``name`` accepts when it does not fit."""
    return _checked(name, model, Path(path))[0]


def _checked(name: str, model: str, path: Path) -> tuple[dict[str, torch.Tensor], WeightsFile]:
    weights = read_weights_file(path)
    state = _converted(name, weights, path)
    try:
        build_from_state_dict(name, model, state, source=str(path))
    except (ValueError, RuntimeError) as exc:  # BackboneError, ClipError: missing, unexpected, mis-shaped keys
        raise WeightsError(_refusal(name, path, weights, str(exc))) from None
    return state, weights


def build_from_state_dict(name: str, model: str, state: dict[str, torch.Tensor], *, source: str = ""):
    """Backbone ``name`` with the weights ``state`` (raises when they do not fit it)."""
    if name == PAPER_BACKBONE:
        from depthcore.models.backbones.clip import build_clip_backbone

        return build_clip_backbone(model=model, state_dict=state, source=source)
    return BACKBONES.get(name).build(cfg=SimpleNamespace(init_seed=0, pretrained=source), state_dict=state)


def convert_weights_file(name: str, model: str, source: Path, target: Path) -> dict[str, Any]:
    """Write the checked state dict of ``source`` (:func:`checked_state_dict`) to ``target`` as safetensors
    (atomically); returns the manifest entries: the file, its SHA-256, the source's format and SHA-256."""
    from safetensors.torch import save_file

    state, weights = _checked(name, model, source)
    with atomic_path(target) as tmp:
        save_file({k: v.contiguous() for k, v in sorted(state.items())}, str(tmp))
    return {
        "file": target.name,
        "sha256": sha256_of(target),
        "source_format": weights.format,
        "source_sha256": sha256_of(source),
    }


def fits(name: str, model: str, path: Path) -> bool:
    """Whether the weights file ``path`` converts and builds backbone ``name`` (a kept file written by an older
    version that does not is redone, not reused)."""
    try:
        checked_state_dict(name, model, path)
    except WeightsError:
        return False
    return True


def accepted_files(name: str) -> str:
    """The files backbone ``name`` reads, one per line, for messages."""
    return "\n".join(f"  - {line}" for line in backbone_spec(name).accepted)


def _converted(name: str, weights: WeightsFile, path: Path) -> dict[str, torch.Tensor]:
    try:
        return backbone_spec(name).convert_state_dict(weights.tensors)
    except ValueError as exc:  # BackboneError of the converter
        raise WeightsError(_refusal(name, path, weights, str(exc))) from None


def _refusal(name: str, path: Path, weights: WeightsFile, problem: str) -> str:
    return (
        f"{path} is {weights.describe()}, which backbone {name!r} cannot use: {problem}. {name} reads:\n"
        f"{accepted_files(name)}"
    )
