"""What the CLIP and SAM weight folders share: user files under ``weights/<model>/``, and the manifest.

A ``fetch_backbone`` / ``fetch_sam`` output folder holds exactly the weights in use plus ``weights.json``
(model, tag, file, SHA-256); stages downstream read the manifest, never the params that chose it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from depthcore.errors import DepthcoreError
from depthcore.io import atomic_path, prune_dir, read_json, restore_advice, sha256_of, write_json_atomic

MANIFEST = "weights.json"
PRETRAINED_NONE = "none"  # the ``pretrained`` tag of seeded random weights (no file)


class WeightsError(DepthcoreError, ValueError):
    """Weights are missing, outside the tracked folder, or do not fit the model."""


def write_weights_dir(
    section,
    out_dir: Path | str,
    *,
    remote_tag: str,
    fetch_remote: Callable[[Path], dict[str, Any]],
    local_dir: Path,
    param: str,
    use_local: Callable[[Path, Path], dict[str, Any]] | None = None,
) -> Path:
    """Make ``out_dir`` hold the weights a clip/sam params ``section`` (``model``, ``pretrained``,
    ``init_seed``) asks for, and their manifest; returns the manifest path. ``pretrained`` is 'none'
    (seeded random init, no file), ``remote_tag`` (``fetch_remote(out_dir)`` downloads the release and
    returns its ``file`` / ``sha256`` entries) or a file under ``local_dir``, which ``use_local(file, out_dir)``
    turns into the folder's weights and manifest entries (default: copied as it is). Other files are removed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"model": section.model, "pretrained": section.pretrained, "file": None, "sha256": None}
    if section.pretrained == PRETRAINED_NONE:
        manifest["init_seed"] = section.init_seed
    elif section.pretrained == remote_tag:
        manifest |= fetch_remote(out_dir)
    else:
        source = local_weights_file(section.pretrained, local_dir, param=param)
        manifest |= (use_local or copy_weights)(source, out_dir)
    return finish_weights_dir(out_dir, manifest)


def local_weights_file(pretrained: str, local_dir: Path, *, param: str) -> Path:
    """The user's file ``pretrained``, which must lie under ``local_dir`` (a DVC dependency of the fetch stage, so
    that DVC notices a changed file); WeightsError naming the param otherwise."""
    source = Path(pretrained)
    inside = source.resolve().is_relative_to(local_dir.resolve())
    if not inside or not source.is_file():
        problem = "is not an existing file" if inside else f"lies outside {local_dir}/"
        raise WeightsError(
            f"params '{param}': {pretrained!r} is not a known tag and {problem}. Put local weights under "
            f"{local_dir}/ (the fetch stage depends on that folder, so DVC re-runs what used a file whose content "
            "changed) and give that path"
        )
    return source


def copy_weights(source: Path, out_dir: Path) -> dict[str, Any]:
    """Copy the user's file ``source`` into ``out_dir``; returns its manifest entries."""
    target = out_dir / source.name
    digest = sha256_of(source)
    if not target.exists() or sha256_of(target) != digest:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    return {"file": target.name, "sha256": digest}


def finish_weights_dir(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Remove everything in ``out_dir`` but the manifest's file, then write the manifest; returns its path."""
    prune_dir(out_dir, {MANIFEST, manifest.get("file")})
    write_json_atomic(out_dir / MANIFEST, manifest)
    return out_dir / MANIFEST


def read_manifest(weights_dir: Path | str, *, stage: str) -> dict[str, Any]:
    """The manifest of a weights folder (``{}`` when absent and ``stage`` is empty)."""
    path = Path(weights_dir) / MANIFEST
    if not path.exists():
        raise WeightsError(f"{path} not found: run `dvc repro {stage}` first")
    return read_json(path)


def weights_file(weights_dir: Path | str, manifest: dict[str, Any], *, stage: str) -> Path | None:
    """The weights file a manifest names (None for random init), verified against the SHA-256 the manifest
    records; WeightsError if it is missing or its bytes are not those recorded."""
    if manifest.get("file") is None:
        return None
    path = Path(weights_dir) / manifest["file"]
    if not path.is_file():
        raise WeightsError(f"weights {path} not found: run `dvc repro {stage}` first")
    if manifest.get("sha256") and sha256_of(path) != manifest["sha256"]:
        raise WeightsError(
            f"weights {path} are corrupt: their SHA-256 is not the {manifest['sha256'][:16]}... that "
            f"{Path(weights_dir) / MANIFEST} records; {restore_advice(weights_dir)}"
        )
    return path
