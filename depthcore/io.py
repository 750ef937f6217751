"""Atomic file writes (temporary name, then rename: never a half-written file), JSON reading, safetensors files
with depthcore's JSON metadata, folder pruning and file hashes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from depthcore.errors import DepthcoreError

HASH_BLOCK_BYTES = 1 << 20
SAFETENSORS_META_KEY = "depthcore"  # the safetensors metadata entry holding depthcore's JSON (checkpoints, artifacts)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path | str, text: str) -> None:
    """``text`` written to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path | str, data: Any) -> None:
    """``data`` as indented JSON with sorted keys (deterministic bytes)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path | str) -> Any:
    """The JSON at ``path``; DepthcoreError naming the file if it is missing or unreadable."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DepthcoreError(f"{path} does not exist: run `dvc repro` to build it") from None
    except (OSError, ValueError) as exc:
        raise DepthcoreError(f"{path} is not readable JSON ({exc}): restore it with `dvc checkout {path}`") from exc


def write_safetensors_atomic(path: Path | str, tensors: Mapping[str, Any], meta: Mapping[str, Any] | None) -> Path:
    """``tensors`` (contiguous CPU tensors) as safetensors at ``path``, atomically, with ``meta`` (JSON-able) as
    sorted JSON under :data:`SAFETENSORS_META_KEY`: deterministic bytes, no pickle."""
    from safetensors.torch import save_file

    metadata = None if meta is None else {SAFETENSORS_META_KEY: json.dumps(meta, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(dict(tensors), str(tmp), metadata=metadata)
    return Path(path)


def read_safetensors(path: Path | str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, tensors) of a file :func:`write_safetensors_atomic` wrote; metadata ``{}`` when it has none.
    Raises what safetensors or json raise for a file that is not one (callers name the stage that rebuilds it)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {}).get(SAFETENSORS_META_KEY, "{}"))
        tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    return meta, tensors


def write_csv_atomic(path: Path | str, rows: list[dict[str, Any]], fieldnames: list[str]) -> None:
    """Rows (dicts) as CSV with columns ``fieldnames``."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def prune_dir(directory: Path | str, keep: set[str]) -> None:
    """Remove every entry of ``directory`` whose name is not in ``keep`` (files and folders)."""
    for entry in Path(directory).iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def sha256_of(path: Path | str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()
