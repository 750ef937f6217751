"""Resumable, verified downloads against a local HTTP server on 127.0.0.1."""

import hashlib
import http.server
import socket
import threading
import time

import pytest

from depthcore.download import DownloadError, RemoteFile, fetch

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    requests: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        rng = self.headers.get("Range")
        type(self).requests.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/file.bin", _Handler.requests
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_is_not_repeated(server, tmp_path):
    url, requests = server
    remote = RemoteFile(url=url, filename="file.bin", size=len(PAYLOAD), sha256=SHA)
    path = fetch(remote, tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD and requests == [None]
    assert fetch(remote, tmp_path, progress=False) == path
    assert len(requests) == 1  # present and verified: no second download


def test_interrupted_download_resumes_with_range(server, tmp_path):
    url, requests = server
    (tmp_path / "file.bin.partial").write_bytes(PAYLOAD[:300_000])
    remote = RemoteFile(url=url, filename="file.bin", size=len(PAYLOAD), sha256=SHA)
    path = fetch(remote, tmp_path, progress=False)
    assert requests == ["bytes=300000-"]
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "file.bin.partial").exists()


def test_checksum_mismatch_fails_and_keeps_nothing(server, tmp_path):
    url, _ = server
    remote = RemoteFile(url=url, filename="file.bin", size=len(PAYLOAD), sha256="0" * 64)
    with pytest.raises(DownloadError, match="SHA-256"):
        fetch(remote, tmp_path, progress=False)
    assert not (tmp_path / "file.bin").exists() and not (tmp_path / "file.bin.partial").exists()


def test_unpinned_hash_is_recorded_then_enforced(server, tmp_path):
    url, _ = server
    remote = RemoteFile(url=url, filename="file.bin")
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
