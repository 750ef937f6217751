"""Resumable, verified HTTP downloads (used only by the ``fetch_*`` stages).

A download goes to ``<dest>.partial``; when interrupted, the next call asks the server for the
remaining bytes with an HTTP ``Range`` header and appends. The finished file is checked against
the pinned size and SHA-256 before it is renamed to ``dest``. Where no SHA-256 is published, the
hash of the first download is recorded in ``<dest>.sha256`` and every later use is checked against
it. A file already at ``dest`` that verifies is never downloaded again.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from depthcore.errors import DepthcoreError
from depthcore.io import sha256_of

CHUNK_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 15.0
OFFLINE_HINT = (
    "To run without network, use the rendered rooms and random weights: make repro-offline "
    "(its settings: python -m depthcore.config.offline)"
)


class DownloadError(DepthcoreError, RuntimeError):
    """A file could not be fetched or failed verification. The message says how to fix it."""


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch: its URL and, where published, its size in bytes and SHA-256 (hex)."""

    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _expected_sha(remote: RemoteFile, dest: Path) -> str | None:
    if remote.sha256:
        return remote.sha256.lower()
    side = _sidecar(dest)
    return side.read_text().split()[0].lower() if side.exists() else None


def verify(remote: RemoteFile, path: Path, dest: Path | None = None) -> str:
    """Check size and SHA-256 of ``path``; return the hash. Raises DownloadError on mismatch."""
    dest = dest or path
    actual_size = path.stat().st_size
    if remote.size is not None and actual_size != remote.size:
        raise DownloadError(
            f"{dest}: size {actual_size} bytes, expected {remote.size} (incomplete or wrong file). "
            f"Delete it and rerun, or place the correct file from {remote.url} there by hand."
        )
    digest = sha256_of(path)
    expected = _expected_sha(remote, dest)
    if expected is not None and digest != expected:
        source = "pinned" if remote.sha256 else f"recorded at first download in {_sidecar(dest)}"
        raise DownloadError(
            f"{dest}: SHA-256 {digest} does not match the {source} value {expected}. "
            f"The file is corrupt or not the official one: delete it and rerun to download it again "
            f"from {remote.url}."
        )
    return digest


def fetch(remote: RemoteFile, directory: Path | str, *, progress: bool = True) -> Path:
    """Make ``directory/remote.filename`` exist and verify; download (resuming) if needed.

    Returns the final path. Raises DownloadError naming the file, the URL, how to place the file
    by hand and how to run offline, when the network fails or verification fails.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / remote.filename
    if dest.exists():
        verify(remote, dest)
        _record(remote, dest)
        return dest

    part = dest.with_name(dest.name + ".partial")
    have = part.stat().st_size if part.exists() else 0
    if remote.size is not None and have > remote.size:
        part.unlink()
        have = 0
    if remote.size is None or have < remote.size:
        _download(remote, part, have, dest, progress)
    try:
        verify(remote, part, dest)
    except DownloadError:
        part.unlink()  # a complete but wrong file cannot be resumed into a right one
        raise
    os.replace(part, dest)
    _record(remote, dest)
    return dest


def _record(remote: RemoteFile, dest: Path) -> None:
    """Remember the hash of an unpinned file so later uses are checked against it."""
    if remote.sha256 is None and not _sidecar(dest).exists():
        _sidecar(dest).write_text(f"{sha256_of(dest)}  {dest.name}\n")


def _download(remote: RemoteFile, part: Path, have: int, dest: Path, progress: bool) -> None:
    request = urllib.request.Request(remote.url, headers={"User-Agent": "depthcore"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S)
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(_offline_message(remote, dest, exc)) from exc
    with response:
        status = getattr(response, "status", 200)
        if have and status != 206:  # server ignored the Range header: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else remote.size
        mode = "ab" if have else "wb"
        with (
            open(part, mode) as fh,
            tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar,
        ):
            try:
                for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                    fh.write(block)
                    bar.update(len(block))
            except (OSError, urllib.error.URLError) as exc:
                raise DownloadError(
                    f"download of {remote.url} was interrupted after {part.stat().st_size} bytes ({exc}); "
                    f"rerun to resume from {part}."
                ) from exc


def _offline_message(remote: RemoteFile, dest: Path, exc: Exception) -> str:
    return (
        f"could not download {dest.name} from {remote.url}: {exc}.\n"
        f"If this machine has no network, download the file elsewhere and place it at {dest} "
        f"(it is verified before use).\n{OFFLINE_HINT}"
    )
