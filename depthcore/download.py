"""Resumable, verified HTTP downloads (used only by the ``fetch_*`` stages).

A download goes to ``<dest>.partial``. When the connection drops, stalls (no data for
``CONNECT_TIMEOUT_S`` seconds) or ends before the size the server or the pin announced, the same
call asks again for the remaining bytes with an HTTP ``Range`` header and appends, up to
``MAX_ATTEMPTS`` requests in all, waiting ``BACKOFF_S`` seconds before the second and twice as long
before each further one. If every attempt fails, the partial file is kept and the error says from
which byte a rerun resumes. A server that ignores ``Range`` (200) or answers from another byte than
asked is restarted from byte 0, truncating the partial. An HTTP 4xx answer (other than 416, 408 and
429) is not retried, and a first request that cannot connect at all fails at once with a hint for
working offline.

The finished file is checked against the pinned size and SHA-256 before it is renamed to ``dest``;
only a file that is complete (or too large) and wrong is deleted, a short one never is. Where no
SHA-256 is published, the hash of the first download is recorded in ``<dest>.sha256`` and every
later use is checked against it. A file already at ``dest`` that verifies is never downloaded again.
"""

from __future__ import annotations

import http.client
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from depthcore.errors import DepthcoreError
from depthcore.io import sha256_of

CHUNK_BYTES = 1 << 20  # bytes asked of the socket per read
CONNECT_TIMEOUT_S = 15.0  # seconds to connect, and to wait for each read before retrying
MAX_ATTEMPTS = 5  # requests per fetch() before giving up (the partial file is kept)
BACKOFF_S = 1.0  # seconds before the second attempt; doubled before each further one
RETRIED_4XX = frozenset({408, 429})  # client errors that are worth another request
OFFLINE_HINT = (
    "To run without network, use the rendered rooms and random weights: make repro-offline "
    "(its settings: python -m depthcore.config.offline)"
)
_sleep = time.sleep  # tests replace it to record the backoff delays


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
    """Check size (bytes) and SHA-256 of ``path``; return the hash. Raises DownloadError on mismatch."""
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
    """Make ``directory/remote.filename`` exist and verify; download (resuming, retrying) if needed.

    Returns the final path. Raises DownloadError naming the file, the URL and what to do: after
    ``MAX_ATTEMPTS`` failed requests, from which byte a rerun resumes (the partial file is kept);
    when no connection could be made at all, how to place the file by hand and how to run offline;
    when verification fails, what is wrong and how to get the right file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / remote.filename
    if dest.exists():
        verify(remote, dest)
        _record(remote, dest)
        return dest

    part = dest.with_name(dest.name + ".partial")
    if remote.size is not None and _size(part) > remote.size:
        part.unlink()
    if remote.size is None or _size(part) < remote.size:
        _download(remote, part, dest, progress)
    try:
        verify(remote, part, dest)
    except DownloadError:
        if remote.size is None or _size(part) >= remote.size:
            part.unlink()  # a complete but wrong file cannot be resumed into a right one
        raise
    os.replace(part, dest)
    _record(remote, dest)
    return dest


def _record(remote: RemoteFile, dest: Path) -> None:
    """Remember the hash of an unpinned file so later uses are checked against it."""
    if remote.sha256 is None and not _sidecar(dest).exists():
        _sidecar(dest).write_text(f"{sha256_of(dest)}  {dest.name}\n")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _download(remote: RemoteFile, part: Path, dest: Path, progress: bool) -> None:
    """Append to ``part`` until it holds the whole file, retrying; raise DownloadError if it cannot."""
    have = _size(part)
    total = remote.size  # bytes of the whole file, once the pin or the server states it
    failure: object = None  # why the last attempt failed
    with tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                _sleep(BACKOFF_S * 2 ** (attempt - 1))
            request = urllib.request.Request(remote.url, headers={"User-Agent": "depthcore"})
            if have:
                request.add_header("Range", f"bytes={have}-")
            try:
                with urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S) as response:
                    start, total = _body_span(response, remote, dest)
                    bar.total = total
                    if start != have:  # not the rest of our partial (or a 200): start over at byte 0
                        failure = f"asked for bytes {have}-, got Content-Range {response.headers['Content-Range']}"
                        have = _truncate(part, bar)
                        if start != 0:
                            continue
                    with open(part, "ab") as fh:
                        while block := response.read(CHUNK_BYTES):
                            fh.write(block)
                            have += len(block)
                            bar.update(len(block))
                if total is None or have >= total:
                    return
                failure = f"the connection closed after {have} of {total} bytes"
            except urllib.error.HTTPError as exc:
                failure = exc
                if exc.code == 416:  # nothing left to send: complete if the sizes agree, else start over
                    if have == _expected_total(remote, _content_range(exc.headers)[1], dest):
                        return
                    have = _truncate(part, bar)
                elif 400 <= exc.code < 500 and exc.code not in RETRIED_4XX:
                    raise DownloadError(
                        f"could not download {dest.name}: {remote.url} answered HTTP {exc.code} {exc.reason}. "
                        f"Check the URL, or place the file at {dest} by hand."
                    ) from exc
            except urllib.error.URLError as exc:  # no connection: offline at once, retried once one worked
                if attempt == 0:
                    raise DownloadError(_offline_message(remote, dest, exc)) from exc
                failure = exc
            except (http.client.HTTPException, OSError) as exc:  # drops and stalls (read timeouts)
                failure = exc
    reason = " ".join(str(failure).split())
    raise DownloadError(
        f"download of {remote.url} failed {MAX_ATTEMPTS} times (last: {reason}); {part} is kept: "
        f"rerun to resume from {have} of {total if total is not None else 'unknown'} bytes."
    )


def _truncate(part: Path, bar: tqdm) -> int:
    """Empty the partial file and the progress bar; return the bytes now held (0)."""
    part.write_bytes(b"")
    bar.reset(bar.total)
    return 0


def _content_range(headers) -> tuple[int | None, int | None]:
    """First byte and whole-file size (bytes) from ``Content-Range: bytes START-END/TOTAL`` (or ``*/TOTAL``)."""
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", (headers.get("Content-Range") or "").strip())
    if match is None:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total != "*" else None)


def _body_span(response, remote: RemoteFile, dest: Path) -> tuple[int | None, int | None]:
    """Where the body of ``response`` starts in the file (None: unknown) and the file's size (bytes)."""
    length = response.headers.get("Content-Length")
    if response.status != 206:
        return 0, _expected_total(remote, int(length) if length else None, dest)
    start, total = _content_range(response.headers)
    if total is None and start is not None and length:
        total = start + int(length)
    return start, _expected_total(remote, total, dest)


def _expected_total(remote: RemoteFile, served: int | None, dest: Path) -> int | None:
    """The whole file's size in bytes: the pinned one, which the server's (if stated) must match."""
    if remote.size is not None and served is not None and served != remote.size:
        raise DownloadError(
            f"{remote.url} serves {served} bytes for {dest.name} but {remote.size} are pinned: the file "
            f"there has changed. Place the correct file at {dest} by hand."
        )
    return remote.size if remote.size is not None else served


def _offline_message(remote: RemoteFile, dest: Path, exc: Exception) -> str:
    return (
        f"could not download {dest.name} from {remote.url}: {exc}.\n"
        f"If this machine has no network, download the file elsewhere and place it at {dest} "
        f"(it is verified before use).\n{OFFLINE_HINT}"
    )
