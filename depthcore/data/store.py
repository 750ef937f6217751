"""Zarr I/O shared by every stage that writes or reads a store.

Writers go through :class:`ResumableStore`: the group is built at ``<name>.partial`` next to the final
path, under an exclusive writer lock (a second process waits, then fails naming the first), items (images)
are written in index order, the number finished is recorded in the group's attrs, and only
:meth:`ResumableStore.commit` renames the group to its final name, after checking that every array has its
metadata and every chunk. A rerun resumes a partial group only when it was started for the same ``key`` (the
stage's input identity: the DVC hashes of its dependencies and its params); a different key starts afresh
and says why; no key (a stage run by hand) keeps the partial and says how to resume it. Temporary chunk files
that a killed write leaves behind are removed, so a finished store holds exactly what an uninterrupted run
writes.

Arrays are chunked one item per chunk along axis 0, compressed (zstd by default) and checksummed (crc32c over
the compressed bytes, every chunk, all-zero chunks included). Readers use :class:`Store`: read-only, safe in
DataLoader workers (each process opens its own handle), and a chunk whose checksum fails raises a StoreError
naming the store, array and image and the command that restores it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.core.sync import sync

from depthcore.errors import DepthcoreError
from depthcore.io import WriterLock, restore_advice

ZSTD_LEVEL = 3
_PROGRESS = "_items_done"
_KEY = "_resume_key"
ZARR_TEMP_FILE = re.compile(r"\.[0-9a-f]{32}\.partial$")  # zarr's LocalStore writes chunks via such files
WRITE_CONFIG = {"write_empty_chunks": True}  # every chunk on disk (and so checksummed), all-zero ones too


class StoreError(DepthcoreError, RuntimeError):
    """A store is missing, unfinished, corrupt, or does not fit the params."""


def partial_path(path: Path | str) -> Path:
    """Where the unfinished version of ``path`` is written."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def remove_zarr_temp_files(root: Path) -> int:
    """Delete the temporary chunk files a killed zarr write left under ``root``; returns how many."""
    stray = [p for p in root.rglob("*.partial") if p.is_file() and ZARR_TEMP_FILE.search(p.name)]
    for path in stray:
        path.unlink()
    return len(stray)


class Store:
    """A finished zarr store, read-only. ``read(name, index)`` is the one way images are read."""

    def __init__(self, path: Path | str, *, required: tuple[str, ...] = ()):
        self.path = Path(path)
        if not self.path.exists():
            hint = ""
            if partial_path(self.path).exists():
                hint = (
                    f" An unfinished {partial_path(self.path).name} exists: rerun the stage that writes it to resume."
                )
            raise StoreError(f"store {self.path} does not exist.{hint} Run `dvc repro` to build it.")
        self._group: zarr.Group | None = None
        self._arrays: dict[str, zarr.Array] = {}  # opened once per process: opening reads and parses metadata
        missing = [name for name in required if name not in self.group]
        if missing:
            raise StoreError(
                f"store {self.path} lacks the array(s) {missing}; it holds {sorted(self.group.array_keys())}: "
                + restore_advice(self.path)
            )
        self.attrs: dict[str, Any] = dict(self.group.attrs)

    @property
    def group(self) -> zarr.Group:
        if self._group is None:
            try:
                self._group = zarr.open_group(store=str(self.path), mode="r")
            except Exception as exc:  # zarr raises several types for a corrupt or foreign directory
                raise StoreError(
                    f"{self.path} is not a readable zarr store ({exc}): {restore_advice(self.path)}"
                ) from exc
        return self._group

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_group": None, "_arrays": {}}  # each DataLoader worker opens its own handles

    def _array(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            self._arrays[name] = self.group[name]
        return self._arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.group

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._array(name).shape)

    def read(self, name: str, index: int | slice | np.ndarray | None = None, inner: int | None = None) -> np.ndarray:
        """Array ``name`` at ``index`` along axis 0 (an int, a slice, an index array, None = all) and, with
        ``inner``, at that index along axis 1 (e.g. one view of a CLIP layer: only its chunks are decompressed
        where the array is chunked along axis 1)."""
        array = self._array(name)
        try:
            if index is None:
                return np.asarray(array[...])
            if isinstance(index, np.ndarray):
                return np.asarray(array.get_orthogonal_selection((index,)))
            return np.asarray(array[index] if inner is None else array[index, inner])
        except Exception as exc:
            raise self._unreadable(name, index, exc) from exc

    def _unreadable(self, name: str, index, exc: Exception) -> StoreError:
        where = "all images" if index is None else f"image(s) {index}"
        return StoreError(
            f"{self.path}: array '{name}', {where} cannot be read ({type(exc).__name__}: {exc}); the store is "
            f"corrupt: {restore_advice(self.path)}"
        )


def read_items(requests: Sequence[tuple[Store, str, int, int | None]]) -> list[np.ndarray]:
    """What :meth:`Store.read` returns for each ``(store, array, index, inner)``, read at once: zarr fetches and
    decompresses their chunks concurrently (its async API), so a sample of several arrays costs about its
    largest read, not their sum. A failed read raises the StoreError :meth:`Store.read` would."""

    arrays = [store._array(name).async_array for store, name, _, _ in requests]  # opened outside zarr's loop

    async def gather() -> list:
        reads = [
            array.getitem(index if inner is None else (index, inner))
            for array, (_, _, index, inner) in zip(arrays, requests, strict=True)
        ]
        return await asyncio.gather(*reads, return_exceptions=True)

    results = sync(gather())
    for (store, name, index, _), result in zip(requests, results, strict=True):
        if isinstance(result, Exception):
            raise store._unreadable(name, index, result) from result
    return [np.asarray(result) for result in results]


class ResumableStore:
    """A zarr group written item by item at ``<path>.partial``, renamed to ``path`` when complete.

    key: identity of the work (the stage's DVC input hashes and params). A partial group started with the
    same key is resumed from the first unfinished item; one started with another key is discarded (its inputs
    changed). ``key=None`` (no identity: a stage run by hand) never resumes and never discards finished work: a
    partial group with images done is kept and StoreError says how to resume it. ``resume=False``: work quick
    enough to redo, an existing partial group is replaced. The writer lock is held from here until
    :meth:`commit` (or the process's end). Messages go to ``log``.
    """

    def __init__(self, path: Path | str, *, key: str | None, resume: bool = True, log=print):
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.log = log
        self.lock = WriterLock(self.tmp)
        try:
            self.group = self._open(key, resume)
        except BaseException:
            self.lock.release()
            raise
        self._declared: set[str] = set()

    def _open(self, key: str | None, resume: bool) -> zarr.Group:
        if self.tmp.exists():
            try:
                group = zarr.open_group(store=str(self.tmp), mode="r+")
                done: int | None = int(group.attrs.get(_PROGRESS, 0))
            except Exception:  # unreadable leftovers
                group, done = None, None
            if not resume:
                reason = "quick to redo"
            elif key is None and done:
                raise StoreError(
                    f"{self.tmp} holds unfinished work ({done} images done), kept: this run has no input identity "
                    "(it was not started by DVC) to check that work against. Resume it with `dvc repro`, which "
                    f"checks, or delete {self.tmp} to start afresh"
                )
            elif group is None:
                reason = "the unfinished store is unreadable"
            elif key is None:
                reason = "no work done yet"
            elif group.attrs.get(_KEY) == key:
                if remove_zarr_temp_files(self.tmp):
                    self.log(f"{self.path}: removed temporary files of an interrupted write")
                self.log(f"{self.path}: resuming from image {done}")
                return group
            else:
                reason = "its inputs changed"
            self.log(f"{self.path}: starting afresh ({reason})")
            shutil.rmtree(self.tmp)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(store=str(self.tmp), mode="w")
        group.attrs.update({_KEY: key, _PROGRESS: 0})
        return group

    @property
    def done(self) -> int:
        """Number of leading items already written (resume from this index)."""
        return int(self.group.attrs.get(_PROGRESS, 0))

    def array(
        self, name: str, shape: tuple[int, ...], dtype: Any, *, compressors: Any = None, split_axis1: bool = False
    ) -> zarr.Array:
        """Create (or reopen, when resuming) an array chunked one item per chunk (1-D arrays: one chunk; with
        ``split_axis1``, one chunk per item and index of axis 1, e.g. per view), compressed with ``compressors``
        (default zstd) and then checksummed (crc32c)."""
        self._declared.add(name)
        chunks = tuple(shape) if len(shape) == 1 else (1, *shape[1:])
        if split_axis1 and len(shape) > 2:
            chunks = (1, 1, *shape[2:])
        if name in self.group:
            arr = self.group[name]
            if tuple(arr.shape) != tuple(shape) or arr.dtype != np.dtype(dtype) or tuple(arr.chunks) != chunks:
                raise StoreError(
                    f"{self.tmp}/{name}: existing array {arr.shape} {arr.dtype} chunks {arr.chunks} != {shape} {dtype} "
                    f"chunks {chunks}"
                )
            return arr.with_config(WRITE_CONFIG)
        if compressors is None:
            compressors = [ZstdCodec(level=ZSTD_LEVEL)]
        elif not isinstance(compressors, list | tuple):
            compressors = [compressors]
        return self.group.create_array(
            name=name,
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            compressors=[*compressors, Crc32cCodec()],
            fill_value=0,
            config=WRITE_CONFIG,
        )

    def mark_done(self, n_items: int) -> None:
        """Record that items [0, n_items) are written. Call after their chunks are stored."""
        self.group.attrs[_PROGRESS] = int(n_items)

    def incomplete(self) -> list[str]:
        """What the group lacks to be finished: declared arrays without metadata, arrays with unwritten chunks,
        items past the recorded progress (empty when complete)."""
        problems = [
            f"array '{n}' has no metadata" for n in sorted(self._declared) if not (self.tmp / n / "zarr.json").is_file()
        ]
        for name in sorted(self.group.array_keys()):
            arr = self.group[name]
            if arr.nchunks_initialized != arr.nchunks:
                problems.append(f"array '{name}' has {arr.nchunks_initialized} of {arr.nchunks} chunks")
            if arr.ndim > 1 and arr.shape[0] != self.done:
                problems.append(f"array '{name}' has {arr.shape[0]} images but {self.done} are recorded as written")
        return problems

    def commit(self, attrs: Mapping[str, Any]) -> Path:
        """Check that the group is complete, set the final attrs (bookkeeping dropped), remove stray temporary
        files, rename to the final path and release the lock. An incomplete group is never renamed: StoreError,
        and the partial group is kept for a rerun to resume."""
        remove_zarr_temp_files(self.tmp)
        problems = self.incomplete()
        if problems:
            raise StoreError(
                f"{self.tmp} is not complete ({'; '.join(problems)}), so it was not committed as {self.path.name}; "
                "it is kept: rerun `dvc repro` to finish it"
            )
        self.group.attrs.clear()
        self.group.attrs.update(dict(attrs))
        if self.path.exists():
            shutil.rmtree(self.path)
        self.tmp.rename(self.path)
        self.lock.release()
        return self.path
