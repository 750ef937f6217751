"""Atomic file writes (temporary name, then rename: never a half-written file), JSON reading, safetensors files
with depthcore's JSON metadata and a checksum of their tensors, folder pruning, file hashes, the advice that
restores a corrupt output, and the writer lock that keeps a second process off unfinished work."""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from depthcore.errors import DepthcoreError

HASH_BLOCK_BYTES = 1 << 20
SAFETENSORS_META_KEY = "depthcore"  # the safetensors metadata entry holding depthcore's JSON (checkpoints, artifacts)
TENSORS_SUM_KEY = "tensors_sha256"  # in that JSON: the SHA-256 of the file's tensors (checked on every read)
LOCK_WAIT_S = 10.0  # how long a second writer waits for the first (an orphan stops within ~0.4 s of its dvc)


class CorruptFileError(DepthcoreError, ValueError):
    """A file's content is not what was written: its checksum does not match."""


class UnsafeFileError(DepthcoreError, ValueError):
    """A weights file that needs code to load (a pickle with code, a TorchScript archive)."""


class LockedError(DepthcoreError, RuntimeError):
    """Another process is writing the same unfinished work."""


def restore_advice(path: Path | str) -> str:
    """How to get a corrupt DVC output back: one command for every case (``depthcore/pipeline/verify.py``). It
    restores the output from the DVC cache when the cache holds intact bytes; under the project's linked cache
    (``.dvc/config``) the cache object is the corrupt file itself, so it deletes that object and recomputes the
    output (plain ``dvc checkout`` or ``dvc repro -f`` would link the corrupt object back)."""
    return (
        f"repair it with `python -m depthcore.pipeline repair {path}` (it restores the output from the DVC cache, "
        "or, where the cache shares the corrupt bytes through a link, deletes them and recomputes it)"
    )


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
        raise DepthcoreError(f"{path} is not readable JSON ({exc}): {restore_advice(path)}") from exc


def tensors_sha256(tensors: Mapping[str, Any]) -> str:
    """Hex SHA-256 over ``tensors`` (torch) in name order: each name, dtype, shape and raw bytes."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{list(value.shape)}|".encode())
        digest.update(value.flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_safetensors_atomic(path: Path | str, tensors: Mapping[str, Any], meta: Mapping[str, Any] | None) -> Path:
    """``tensors`` (contiguous CPU tensors) as safetensors at ``path``, atomically, with ``meta`` (JSON-able) and the
    tensors' SHA-256 (under :data:`TENSORS_SUM_KEY`) as sorted JSON in the one metadata entry
    :data:`SAFETENSORS_META_KEY` (safetensors writes several entries in a random order: one keeps the bytes
    deterministic). No pickle, and a flipped byte anywhere in the tensors fails :func:`read_safetensors`."""
    from safetensors.torch import save_file

    entry = {**(meta or {}), TENSORS_SUM_KEY: tensors_sha256(tensors)}
    with atomic_path(path) as tmp:
        save_file(dict(tensors), str(tmp), metadata={SAFETENSORS_META_KEY: json.dumps(entry, sort_keys=True)})
    return Path(path)


def read_safetensors(path: Path | str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, tensors) of a file :func:`write_safetensors_atomic` wrote; metadata ``{}`` when it has none (the
    checksum is checked, not returned). CorruptFileError when the tensors are not those written; raises what
    safetensors or json raise for a file that is not one (callers name the stage that rebuilds it)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {}).get(SAFETENSORS_META_KEY, "{}"))
        tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    recorded = meta.pop(TENSORS_SUM_KEY, None)
    if recorded is not None and tensors_sha256(tensors) != recorded:
        raise CorruptFileError(
            f"{path} is corrupt (its tensors do not match the checksum written with them): {restore_advice(path)}"
        )
    return meta, tensors


def load_plain_torch(path: Path | str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only, never code.
    UnsafeFileError, in depthcore's words (torch's own advice is to unpickle code, never to be followed here),
    for a pickle that needs code or a TorchScript archive; CorruptFileError for any other pickle torch refuses."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # not a pickle of tensors at all: corrupt, truncated or foreign
            raise CorruptFileError(
                f"{path} cannot be read as a file of tensors (corrupt, truncated or foreign)"
            ) from None
        needs = next((line.strip() for line in str(exc).splitlines() if "Unsupported global" in line), "")
        needs = needs.split(" was not")[0].replace("WeightsUnpickler error: Unsupported global: GLOBAL ", "")
        raise UnsafeFileError(
            f"{path} is a pickle that needs code to load ({needs or 'not only tensors'}), and depthcore never "
            "unpickles code: save its state dict as plain tensors (safetensors, or torch.save of a dict of tensors)"
        ) from None
    except RuntimeError as exc:
        if "TorchScript" not in str(exc):
            raise
        raise UnsafeFileError(
            f"{path} is a TorchScript archive (code, not only tensors), which depthcore never loads: save its state "
            "dict as plain tensors (safetensors, or torch.save of a dict of tensors)"
        ) from None


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


def lock_path(target: Path | str) -> Path:
    """The lock file of ``target`` (beside it): what :class:`WriterLock` holds while ``target`` is written."""
    return Path(target).with_name(Path(target).name + ".lock")


class WriterLock:
    """An exclusive lock on ``<target>.lock``, held by the one writer of ``target`` while it writes (released by
    :meth:`release`, on leaving a ``with`` block, or when the process ends, however it ends). A second writer
    waits up to ``wait_s`` (default :data:`LOCK_WAIT_S`), then fails with LockedError naming the holder's pid.
    The lock file stays (deleting a file that a waiter may have opened is not safe); it lies beside the output,
    outside what DVC tracks."""

    def __init__(self, target: Path | str, *, wait_s: float | None = None):
        self.target = Path(target)
        self.path = lock_path(self.target)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")  # noqa: SIM115  (held open while writing)
        deadline = time.monotonic() + (LOCK_WAIT_S if wait_s is None else wait_s)
        while True:
            try:
                fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._fh.seek(0)
                    holder = self._fh.read().strip() or "unknown"
                    self._fh.close()
                    raise LockedError(
                        f"another process (pid {holder}) is writing {self.target}: wait for it to finish, or stop it "
                        f"(`kill {holder}`) and rerun; its work so far is kept and resumed"
                    ) from None
                time.sleep(0.1)
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"{os.getpid()}\n")
        self._fh.flush()

    @staticmethod
    def held(target: Path | str) -> bool:
        """Whether some process holds the lock of ``target`` now."""
        path = lock_path(target)
        if not path.exists():
            return False
        with open(path) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if not self._fh.closed:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
