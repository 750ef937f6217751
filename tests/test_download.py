"""Resumable, verified downloads against a local HTTP server on 127.0.0.1.

The server follows a plan: one action per request (then ``default``), e.g. send the first k bytes
of the body and close the connection, stall, ignore ``Range``, answer from a wrong byte, an HTTP error. It
counts the body bytes it sent, so the tests can tell a resumed download from one restarted at 0.
"""

import hashlib
import http.server
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest
from tqdm import tqdm

from depthcore import download
from depthcore.download import DownloadError, RemoteFile, fetch

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SIZE = len(PAYLOAD)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
PIECE = 1 << 16  # bytes per server write, and per client read (CHUNK_BYTES in these tests)
DROP = 300_000  # bytes a dropping response sends before closing the connection


@dataclass
class _Plan:
    """What the server does for each request, and what it saw and sent."""

    actions: list = field(default_factory=list)  # (action, bytes or start), consumed in order
    default: tuple = ("ok", 0)  # once ``actions`` is empty
    requests: list = field(default_factory=list)  # the Range header of each request to /file.bin
    redirected: list = field(default_factory=list)  # the Range header of each request to /moved
    sent: int = 0  # body bytes written, all requests together
    release: threading.Event = field(default_factory=threading.Event)  # ends a stall
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked answers need it

    def do_GET(self):  # noqa: N802 (http.server's naming)
        plan: _Plan = self.server.plan
        rng = self.headers.get("Range")
        if self.path.startswith("/moved"):  # /moved/301 etc. redirect to the file
            plan.redirected.append(rng)
            self.send_response(int(self.path.rsplit("/", 1)[1]))
            self.send_header("Location", "/file.bin")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        plan.requests.append(rng)
        action, arg = plan.actions.pop(0) if plan.actions else plan.default
        if action == "error":
            self.send_error(arg)
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng and action != "ignore_range" else 0
        if start >= len(PAYLOAD):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if action == "wrong_start":
            start = arg
        chunked = action == "chunked_drop"
        body = PAYLOAD[start:]
        self.send_response(206 if rng and action != "ignore_range" else 200)
        if rng and action != "ignore_range":
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        cut = action in ("drop", "chunked_drop", "stall")
        try:
            self._send(body[:arg] if cut else body, chunked)
            if action == "stall":
                plan.release.wait(5)
            elif chunked and not cut:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up on this answer
            pass
        self.close_connection = True

    def _send(self, data, chunked):
        plan: _Plan = self.server.plan
        for i in range(0, len(data), PIECE):
            piece = data[i : i + PIECE]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            with plan.lock:
                plan.sent += len(piece)

    def log_message(self, *args):
        pass


@dataclass
class _Server:
    url: str
    plan: _Plan

    @property
    def requests(self):
        return self.plan.requests


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    """No backoff waits, small reads, and a short socket timeout (seconds) so a stall costs little."""
    monkeypatch.setattr(download, "BACKOFF_S", 0.0)
    monkeypatch.setattr(download, "CHUNK_BYTES", PIECE)
    monkeypatch.setattr(download, "CONNECT_TIMEOUT_S", 2.0)


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.plan = _Plan()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield _Server(f"http://127.0.0.1:{httpd.server_address[1]}/file.bin", httpd.plan)
    httpd.plan.release.set()
    httpd.shutdown()
    httpd.server_close()


def _remote(url, size=SIZE, sha256=SHA):
    return RemoteFile(url=url, filename="file.bin", size=size, sha256=sha256)


def test_download_verifies_and_is_not_repeated(server, tmp_path):
    remote = _remote(server.url)
    path = fetch(remote, tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD and server.requests == [None]
    assert fetch(remote, tmp_path, progress=False) == path
    assert len(server.requests) == 1  # present and verified: no second download


def test_interrupted_download_resumes_with_range(server, tmp_path):
    (tmp_path / "file.bin.partial").write_bytes(PAYLOAD[:300_000])
    path = fetch(_remote(server.url), tmp_path, progress=False)
    assert server.requests == ["bytes=300000-"]
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "file.bin.partial").exists()


def test_checksum_mismatch_fails_and_keeps_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match="SHA-256"):
        fetch(_remote(server.url, sha256="0" * 64), tmp_path, progress=False)
    assert not (tmp_path / "file.bin").exists() and not (tmp_path / "file.bin.partial").exists()


def test_unpinned_hash_is_recorded_then_enforced(server, tmp_path):
    remote = _remote(server.url, size=None, sha256=None)
    path = fetch(remote, tmp_path, progress=False)
    assert (tmp_path / "file.bin.sha256").read_text().split()[0] == SHA
    path.write_bytes(PAYLOAD[:-1] + b"x")  # later corruption is caught
    with pytest.raises(DownloadError, match="recorded at first download"):
        fetch(remote, tmp_path, progress=False)


def test_no_network_fails_fast_with_instructions(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = RemoteFile(url=f"http://127.0.0.1:{port}/nyu.mat", filename="nyu.mat", size=10)
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        fetch(remote, tmp_path, progress=False)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "nyu.mat" in message and "place it at" in message and "repro-offline" in message
    assert not (tmp_path / "nyu.mat").exists()


def _assert_complete(path):
    assert path.read_bytes() == PAYLOAD
    assert not path.with_name(path.name + ".partial").exists()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [len(PAYLOAD), None], ids=["pinned", "unpinned"])
def test_dropped_connection_resumes_from_the_byte_reached(server, tmp_path, chunked, size):
    server.plan.actions = [("chunked_drop" if chunked else "drop", DROP)]
    path = fetch(_remote(server.url, size=size), tmp_path, progress=False)
    _assert_complete(path)
    assert len(server.requests) == 2 and server.requests[0] is None
    resumed_at = int(server.requests[1].split("=")[1].rstrip("-"))
    assert DROP - PIECE <= resumed_at <= DROP  # a cut chunked read loses at most its last block
    assert server.plan.sent <= len(PAYLOAD) + PIECE  # resumed, not restarted at 0


def test_stalled_server_times_out_and_resumes(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "CONNECT_TIMEOUT_S", 0.3)
    server.plan.actions = [("stall", DROP)]  # sends DROP bytes, then nothing for 5 s
    start = time.monotonic()
    path = fetch(_remote(server.url), tmp_path, progress=False)
    assert time.monotonic() - start < 3
    _assert_complete(path)
    assert len(server.requests) == 2 and server.requests[1].startswith("bytes=")
    assert DROP - PIECE <= int(server.requests[1].split("=")[1].rstrip("-")) <= DROP
    assert server.plan.sent <= len(PAYLOAD) + PIECE


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.plan.actions = [("drop", DROP), ("ignore_range", 0)]  # then a 200 with the whole file
    path = fetch(_remote(server.url), tmp_path, progress=False)
    _assert_complete(path)
    assert server.requests == [None, f"bytes={DROP}-"]
    assert server.plan.sent == DROP + len(PAYLOAD)  # a restart is right here, and no third request


@pytest.mark.parametrize("wrong_start", [1000, 0])
def test_partial_answer_from_a_wrong_byte_restarts_cleanly(server, tmp_path, wrong_start):
    (tmp_path / "file.bin.partial").write_bytes(PAYLOAD[:DROP])
    server.plan.actions = [("wrong_start", wrong_start)]  # 206 with Content-Range: bytes 1000-... (or 0-...)
    path = fetch(_remote(server.url), tmp_path, progress=False)
    _assert_complete(path)
    # From byte 0 the answer itself is the whole file; from elsewhere it is dropped and asked for again.
    assert server.requests == [f"bytes={DROP}-"] + ([None] if wrong_start else [])


@pytest.mark.parametrize("status", [301, 302, 307])
def test_redirect_keeps_the_range_header(server, tmp_path, status):
    server.plan.actions = [("drop", DROP)]
    moved = server.url.replace("/file.bin", f"/moved/{status}")
    path = fetch(_remote(moved), tmp_path, progress=False)
    _assert_complete(path)
    assert server.plan.redirected == [None, f"bytes={DROP}-"]
    assert server.requests == [None, f"bytes={DROP}-"]  # the Range header survived the redirect
    assert server.plan.sent == len(PAYLOAD)


def test_not_found_is_not_retried_and_keeps_the_partial(server, tmp_path):
    (tmp_path / "file.bin.partial").write_bytes(PAYLOAD[:DROP])
    server.plan.default = ("error", 404)
    with pytest.raises(DownloadError) as info:
        fetch(_remote(server.url), tmp_path, progress=False)
    message = str(info.value)
    assert server.url in message and "404" in message and "\n" not in message
    assert "repro-offline" not in message  # the network works: no offline advice
    assert len(server.requests) == 1
    assert (tmp_path / "file.bin.partial").read_bytes() == PAYLOAD[:DROP]


def test_server_error_is_retried(server, tmp_path):
    server.plan.actions = [("error", 503), ("drop", DROP), ("error", 500)]
    path = fetch(_remote(server.url), tmp_path, progress=False)
    _assert_complete(path)
    assert server.requests == [None, None, f"bytes={DROP}-", f"bytes={DROP}-"]
    assert server.plan.sent == SIZE


def test_always_dropping_server_gives_up_keeping_the_partial_then_a_rerun_resumes(server, tmp_path, monkeypatch):
    waits = []
    monkeypatch.setattr(download, "BACKOFF_S", 1.0)
    monkeypatch.setattr(download, "_sleep", waits.append)
    step = 100_000
    server.plan.default = ("drop", step)
    with pytest.raises(DownloadError) as info:
        fetch(_remote(server.url), tmp_path, progress=False)
    reached = download.MAX_ATTEMPTS * step
    message = str(info.value)
    assert "\n" not in message and f"rerun to resume from {reached} of {len(PAYLOAD)} bytes" in message
    assert len(server.requests) == download.MAX_ATTEMPTS
    assert waits == [2.0**i for i in range(download.MAX_ATTEMPTS - 1)]  # 1, 2, 4, 8 s
    assert (tmp_path / "file.bin.partial").read_bytes() == PAYLOAD[:reached]

    server.plan.default = ("ok", 0)
    path = fetch(_remote(server.url), tmp_path, progress=False)
    _assert_complete(path)
    assert server.requests[-1] == f"bytes={reached}-"
    assert server.plan.sent == len(PAYLOAD)


def test_complete_partial_answered_416_is_verified(server, tmp_path):
    (tmp_path / "file.bin.partial").write_bytes(PAYLOAD)  # unpinned size: fetch cannot tell it is complete
    path = fetch(_remote(server.url, size=None, sha256=None), tmp_path, progress=False)
    _assert_complete(path)
    assert server.requests == [f"bytes={len(PAYLOAD)}-"] and server.plan.sent == 0
    assert (tmp_path / "file.bin.sha256").read_text().split()[0] == SHA


def test_size_other_than_pinned_fails_at_once(server, tmp_path):
    with pytest.raises(DownloadError, match=f"serves {len(PAYLOAD)} bytes .* but {len(PAYLOAD) + 1} are pinned"):
        fetch(_remote(server.url, size=len(PAYLOAD) + 1), tmp_path, progress=False)
    assert len(server.requests) == 1 and not (tmp_path / "file.bin.partial").exists()


def test_progress_bar_continues_over_retries(server, tmp_path, monkeypatch):
    bars = []

    class Recorded(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(download, "tqdm", Recorded)
    (tmp_path / "file.bin.partial").write_bytes(PAYLOAD[:DROP])
    server.plan.actions = [("drop", 200_000)]
    fetch(_remote(server.url), tmp_path, progress=True)
    assert server.requests == [f"bytes={DROP}-", f"bytes={DROP + 200_000}-"]
    assert len(bars) == 1 and bars[0].initial == DROP
    assert bars[0].n == bars[0].total == len(PAYLOAD)
