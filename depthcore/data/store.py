"""Zarr I/O shared by every stage that writes or reads a store.

Writers go through :class:`ResumableStore`: the group is built at ``<name>.partial`` next to the
final path, items (images) are written in index order and the number finished is recorded in the
group's attrs after each batch, and only :meth:`ResumableStore.commit` renames the group to its
final name. So an interrupted stage never leaves anything at the final path that DVC could take for
a finished output, and a rerun with the same settings continues from the first unfinished item.

Arrays are chunked one item per chunk along axis 0 and compressed with zstd. Readers open stores
read-only with :func:`open_store`; zarr groups opened that way are safe to use from DataLoader
workers (each worker re-opens, nothing is written).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from depthcore.errors import DepthcoreError

ZSTD_LEVEL = 3
_PROGRESS = "_items_done"
_FINGERPRINT = "_fingerprint"


class StoreError(DepthcoreError, RuntimeError):
    """A store is missing, unfinished, or was written with settings that do not match."""


def partial_path(path: Path | str) -> Path:
    """Where the unfinished version of ``path`` is written."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def open_store(path: Path | str, *, required: tuple[str, ...] = ()) -> zarr.Group:
    """Open a finished store read-only, checking that the arrays in ``required`` exist."""
    path = Path(path)
    if not path.exists():
        hint = ""
        if partial_path(path).exists():
            hint = f" An unfinished {partial_path(path).name} exists: rerun the stage that writes it to resume."
        raise StoreError(f"store {path} does not exist.{hint} Run `dvc repro` to build it.")
    try:
        group = zarr.open_group(store=str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a corrupt or foreign directory
        raise StoreError(f"{path} is not a readable zarr group ({exc}); delete it and rerun the stage") from exc
    missing = [name for name in required if name not in group]
    if missing:
        raise StoreError(f"store {path} lacks the array(s) {missing}; it holds {sorted(group.array_keys())}")
    return group


class ResumableStore:
    """A zarr group written item by item at ``<path>.partial``, renamed to ``path`` when complete.

    ``fingerprint`` is a JSON-able description of everything that determines the contents (params,
    input hashes). A partial group with another fingerprint is discarded and started afresh, so a
    resumed run produces the same store as an uninterrupted one.
    """

    def __init__(self, path: Path | str, *, fingerprint: Mapping[str, Any]):
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
        self.group = self._open()

    def _open(self) -> zarr.Group:
        if self.tmp.exists():
            try:
                group = zarr.open_group(store=str(self.tmp), mode="r+")
                if group.attrs.get(_FINGERPRINT) == self.fingerprint:
                    return group
            except Exception:  # unreadable leftovers: start again
                pass
            shutil.rmtree(self.tmp)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(store=str(self.tmp), mode="w")
        group.attrs.update({_FINGERPRINT: self.fingerprint, _PROGRESS: 0})
        return group

    @property
    def done(self) -> int:
        """Number of leading items already written (resume from this index)."""
        return int(self.group.attrs.get(_PROGRESS, 0))

    def array(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: Any,
        *,
        chunks: tuple[int, ...] | None = None,
    ) -> zarr.Array:
        """Create (or reopen, when resuming) an array chunked one item per chunk, zstd-compressed."""
        if name in self.group:
            arr = self.group[name]
            if tuple(arr.shape) != tuple(shape) or arr.dtype != np.dtype(dtype):
                raise StoreError(f"{self.tmp}/{name}: existing array {arr.shape} {arr.dtype} != {shape} {dtype}")
            return arr
        return self.group.create_array(
            name=name,
            shape=shape,
            chunks=chunks or (1, *shape[1:]),
            dtype=dtype,
            compressors=ZstdCodec(level=ZSTD_LEVEL),
            fill_value=0,
        )

    def mark_done(self, n_items: int) -> None:
        """Record that items [0, n_items) are written. Call after their chunks are stored."""
        self.group.attrs[_PROGRESS] = int(n_items)

    def commit(self, attrs: Mapping[str, Any]) -> Path:
        """Set the final attrs, drop the bookkeeping, and atomically rename to the final path."""
        final = dict(self.group.attrs)
        final.pop(_PROGRESS, None)
        final.pop(_FINGERPRINT, None)
        final.update(attrs)
        self.group.attrs.clear()
        self.group.attrs.update(final)
        if self.path.exists():
            shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
        os.replace(self.tmp, self.path)
        return self.path


def write_json_atomic(path: Path | str, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file and rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_csv_atomic(path: Path | str, rows: list[dict[str, Any]], fieldnames: list[str] | None = None) -> None:
    """Rows (dicts) as CSV with columns ``fieldnames`` (default: the first row's keys), written via a
    temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
