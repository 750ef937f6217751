"""The ``nyuv2_raw`` source on the raw-frame stand-in (depthcore/data/raw_standin.py, 24 x 32 images): fetched from
a local HTTP server on 127.0.0.1 (resumed after a drop, verified), prepared member by member from the zip into the
dataset layout (training frames, then the official test images), resumed after a kill, carved by whole scenes."""

import hashlib
import http.server
import threading
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pytest
import zarr
from conftest import default_raw
from PIL import Image

from depthcore import download
from depthcore.config.overrides import with_overrides
from depthcore.config.params import DataSection
from depthcore.data import nyuv2, nyuv2_raw
from depthcore.data import prepare as prepare_module
from depthcore.data.nyuv2_raw import RawFramesError, RawTrainingSet
from depthcore.data.prepare import fetch_data, prepare_dataset
from depthcore.data.raw_standin import ARCHIVE_ROOT, write_raw_standin
from depthcore.data.splits import TEST, TRAIN, VAL, read_split, write_validation_split
from depthcore.data.store import Store, partial_path
from depthcore.download import DownloadError

H, W = 24, 32
RAW_FILES = (nyuv2_raw.LIST_NAME, nyuv2_raw.ARCHIVE_NAME, nyuv2.MAT_NAME, nyuv2.SPLITS_NAME)


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """3 training rooms (room 0 as folders room_0000a/b) x 3 views, 2 listed per room; 1 test room of 3 views."""
    return write_raw_standin(tmp_path_factory.mktemp("standin"), height=H, width=W)


@pytest.fixture(scope="module")
def prepared(standin, tmp_path_factory):
    return prepare_dataset(
        "nyuv2_raw", standin.directory, tmp_path_factory.mktemp("out") / "d.zarr", key=None, progress=False
    )


# ------------------------------------------------------------------------------------------- the server
@dataclass
class _Files:
    """Files served by name; ``drops``: bytes to send of the next answers for a name before closing."""

    content: dict
    drops: dict = field(default_factory=dict)
    requests: list = field(default_factory=list)  # (name, Range header)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        files: _Files = self.server.files
        name, rng = self.path.lstrip("/"), self.headers.get("Range")
        files.requests.append((name, rng))
        body = files.content[name]
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Connection", "close")
        self.end_headers()
        drops = files.drops.get(name, [])
        cut = drops.pop(0) if drops else None
        try:
            self.wfile.write(body[start:] if cut is None else body[start : start + cut])
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(standin):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = _Files({name: standin.path(name).read_bytes() for name in RAW_FILES})
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.files
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def served(server, standin, monkeypatch):
    """Params pointing data.nyuv2_raw and data.nyuv2 at the server, with the stand-in's sizes and hashes pinned
    (the archive's left unpinned, as the default is)."""
    url, files = server
    monkeypatch.setattr(download, "BACKOFF_S", 0.0)
    for name, size_attr, sha_attr in (
        (nyuv2.MAT_NAME, "MAT_SIZE", "MAT_SHA256"),
        (nyuv2.SPLITS_NAME, "SPLITS_SIZE", "SPLITS_SHA256"),
    ):
        monkeypatch.setattr(nyuv2, size_attr, len(files.content[name]))
        monkeypatch.setattr(nyuv2, sha_attr, hashlib.sha256(files.content[name]).hexdigest())
    listed = files.content[nyuv2_raw.LIST_NAME]
    params = {
        "data.source": "nyuv2_raw",
        "data.nyuv2.url": f"{url}/{nyuv2.MAT_NAME}",
        "data.nyuv2.splits_url": f"{url}/{nyuv2.SPLITS_NAME}",
        "data.nyuv2_raw.archive_url": f"{url}/{nyuv2_raw.ARCHIVE_NAME}",
        "data.nyuv2_raw.archive_size": None,
        "data.nyuv2_raw.archive_sha256": None,
        "data.nyuv2_raw.list_url": f"{url}/{nyuv2_raw.LIST_NAME}",
        "data.nyuv2_raw.list_size": len(listed),
        "data.nyuv2_raw.list_sha256": hashlib.sha256(listed).hexdigest(),
    }
    return params, files


# -------------------------------------------------------------------------------------------- fetching
def _data(overrides):
    """The validated ``data`` section of the repository's params.yaml with ``overrides``."""
    return DataSection.model_validate(with_overrides(default_raw(), overrides)["data"])


def test_fetch_resumes_a_dropped_archive_and_records_its_hash(served, standin, tmp_path):
    params, files = served
    archive = files.content[nyuv2_raw.ARCHIVE_NAME]
    drop = len(archive) // 2
    files.drops[nyuv2_raw.ARCHIVE_NAME] = [drop]
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "synthetic.zarr").mkdir()  # another source's output: removed
    paths = fetch_data(_data(params), raw, key=None, progress=False)
    assert [p.name for p in paths] == list(RAW_FILES)
    assert [r for r in files.requests if r[0] == nyuv2_raw.ARCHIVE_NAME] == [
        (nyuv2_raw.ARCHIVE_NAME, None),
        (nyuv2_raw.ARCHIVE_NAME, f"bytes={drop}-"),  # resumed from the byte reached, not restarted
    ]
    for name in RAW_FILES:
        assert (raw / name).read_bytes() == files.content[name], name
    sha = hashlib.sha256(archive).hexdigest()
    assert (raw / "sync.zip.sha256").read_text().split()[0] == sha  # unpinned: the first download's hash is kept
    assert sorted(p.name for p in raw.iterdir()) == sorted([*RAW_FILES, "sync.zip.sha256"])
    out = prepare_dataset("nyuv2_raw", raw, tmp_path / "d.zarr", key=None, progress=False)
    assert Store(out).attrs["archive_sha256"] == sha  # runs are comparable by the archive they used


def test_wrong_size_or_hash_is_refused_in_one_line(served, tmp_path):
    params, files = served
    archive = files.content[nyuv2_raw.ARCHIVE_NAME]
    raw = tmp_path / "raw"
    raw.mkdir()
    partial = raw / "sync.zip.partial"
    partial.write_bytes(archive[:1000])  # an interrupted download
    wrong_size = params | {"data.nyuv2_raw.archive_size": len(archive) + 1}
    with pytest.raises(DownloadError) as info:
        fetch_data(_data(wrong_size), raw, key=None, progress=False)
    assert "pinned" in str(info.value) and "\n" not in str(info.value)
    assert partial.read_bytes() == archive[:1000]  # kept for a rerun with the right pins

    wrong_sha = params | {"data.nyuv2_raw.archive_size": len(archive), "data.nyuv2_raw.archive_sha256": "0" * 64}
    with pytest.raises(DownloadError) as info:
        fetch_data(_data(wrong_sha), raw, key=None, progress=False)
    assert "SHA-256" in str(info.value) and "\n" not in str(info.value)
    assert not (raw / "sync.zip").exists()  # a complete file with a wrong hash is never used

    (raw / "sync.zip").write_bytes(archive[:-1] + b"x")  # placed by hand: verified like a download
    with pytest.raises(DownloadError, match="does not match the pinned value"):
        fetch_data(
            _data(params | {"data.nyuv2_raw.archive_sha256": hashlib.sha256(archive).hexdigest()}),
            raw,
            key=None,
            progress=False,
        )


# ----------------------------------------------------------------------------------------------- prepare
def _members(standin, line):
    rgb, depth, _ = line.split()
    with zipfile.ZipFile(standin.path(nyuv2_raw.ARCHIVE_NAME)) as z:
        return z.read(ARCHIVE_ROOT + rgb), z.read(ARCHIVE_ROOT + depth)


def test_rows_are_the_listed_frames_then_the_official_test_images(standin, prepared):
    import io

    g = zarr.open_group(str(prepared), mode="r")
    n_train, n_test = len(standin.lines), len(standin.test_rgb)
    assert g["rgb"].shape == (n_train + n_test, H, W, 3) and g["rgb"].chunks == (1, H, W, 3)
    for i, line in enumerate(standin.lines):
        jpeg, png = _members(standin, line)
        np.testing.assert_array_equal(g["rgb"][i], np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")))
        assert np.abs(g["rgb"][i].astype(int) - standin.train_rgb[i]).mean() < 4  # JPEG q95 of the rendered image
        millimetres = np.asarray(Image.open(io.BytesIO(png)), dtype=np.float64)
        np.testing.assert_array_equal(millimetres, standin.train_depth_mm[i])
        np.testing.assert_allclose(g["depth"][i], millimetres / 1000.0, rtol=1e-6)
    assert (g["depth"][:n_train] == 0).any()  # the raw maps' holes stay invalid
    np.testing.assert_array_equal(g["depth_eval"][:n_train], g["depth"][:n_train])
    assert not g["instances"][:n_train].any() and g["instances"][n_train:].any()
    np.testing.assert_array_equal(g["rgb"][n_train:], standin.test_rgb)
    np.testing.assert_array_equal(g["depth"][n_train:], standin.test_depth)
    np.testing.assert_array_equal(g["depth_eval"][n_train:], standin.test_raw_depth)
    np.testing.assert_array_equal(g["split"][:], [TRAIN] * n_train + [TEST] * n_test)
    names = g.attrs["scene_names"]
    scenes = [names[s] for s in g["scene"][:]]
    folders = [line.split("/")[1] for line in standin.lines]
    assert scenes[:n_train] == [f.rstrip("ab") for f in folders] and set(scenes[n_train:]) == {"room_0003"}
    assert g.attrs["source"] == "nyuv2_raw" and g.attrs["train_frames"] == n_train == 6
    assert g.attrs["scenes_in_train_and_test"] == []


def test_validation_is_carved_by_whole_scenes_across_recordings(prepared, tmp_path):
    store = Store(prepared)
    out = write_validation_split(prepared, tmp_path / "split.json", val_fraction=0.3, seed=1)
    codes, scene = read_split(out, store.shape("split")[0]), store.read("scene")
    np.testing.assert_array_equal(codes == TEST, store.read("split") == TEST)
    assert (codes == VAL).any() and (codes == TRAIN).any()
    for s in np.unique(scene):  # room_0000a and room_0000b are one scene: never split
        assert len(set(codes[scene == s])) == 1


def test_members_are_read_one_at_a_time_never_extracted(standin, tmp_path, monkeypatch):
    reads = []
    original = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, m: reads.append(m.filename) or original(self, m))
    for method in ("extract", "extractall"):
        monkeypatch.setattr(zipfile.ZipFile, method, lambda *a, **k: pytest.fail("the archive was extracted"))
    before = sorted(p.name for p in standin.directory.iterdir())
    prepare_dataset("nyuv2_raw", standin.directory, tmp_path / "d.zarr", key=None, progress=False)
    listed = [ARCHIVE_ROOT + path for line in standin.lines for path in line.split()[:2]]
    assert reads == listed  # each listed member once, in the list's order; the unlisted frames are never read
    assert sorted(p.name for p in standin.directory.iterdir()) == before
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".jpg", ".png")]

    monkeypatch.setattr(nyuv2_raw, "MAX_MEMBER_BYTES", 16)  # a member too large to be a frame is refused unread
    reads.clear()
    with pytest.raises(RawFramesError, match="not a frame"):
        prepare_dataset("nyuv2_raw", standin.directory, tmp_path / "e.zarr", key=None, progress=False)
    assert reads == []


def test_killed_prepare_resumes_to_the_same_store(standin, prepared, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_module, "PROGRESS_EVERY", 1)
    reads, stop = [], {"at": 3}
    original = zipfile.ZipFile.read

    def read(self, member):
        if member.filename.endswith(".jpg"):
            if len(reads) == stop["at"]:
                raise KeyboardInterrupt("simulated kill")
            reads.append(member.filename)
        return original(self, member)

    monkeypatch.setattr(zipfile.ZipFile, "read", read)
    out = tmp_path / "d.zarr"
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("nyuv2_raw", standin.directory, out, key="same inputs", progress=False)
    assert not out.exists() and partial_path(out).exists()
    stop["at"], reads[:] = None, []
    prepare_dataset("nyuv2_raw", standin.directory, out, key="same inputs", progress=False)
    assert reads == [ARCHIVE_ROOT + line.split()[0] for line in standin.lines[3:]]  # rows 0-2 not read again
    got, want = zarr.open_group(str(out), mode="r"), zarr.open_group(str(prepared), mode="r")
    assert dict(got.attrs) == dict(want.attrs)
    for name in want.array_keys():
        np.testing.assert_array_equal(got[name][:], want[name][:], err_msg=name)


def test_a_list_that_does_not_fit_the_archive_fails_clearly(standin, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in RAW_FILES:
        (raw / name).symlink_to(standin.path(name))
    (raw / nyuv2_raw.LIST_NAME).unlink()
    (raw / nyuv2_raw.LIST_NAME).write_text("/room_0009/rgb_00000.jpg /room_0009/sync_depth_00000.png 518.8579\n")
    with pytest.raises(RawFramesError, match=r"lacks 2 file\(s\) the list names"):
        RawTrainingSet(raw)
    (raw / nyuv2_raw.LIST_NAME).write_text("/room_0001/rgb_00000.jpg /room_0002/sync_depth_00000.png 518.8579\n")
    with pytest.raises(RawFramesError, match=r"nyudepthv2_train_files_with_gt.txt:1: .*BTS's list format"):
        RawTrainingSet(raw)


def test_bts_list_lines_parse_and_recordings_of_one_room_are_one_scene(tmp_path):
    lines = [  # lines 1, 9 and 47 of cleinc/bts train_test_inputs/nyudepthv2_train_files_with_gt.txt
        "/kitchen_0028b/rgb_00045.jpg /kitchen_0028b/sync_depth_00045.png 518.8579",
        "/furniture_store_0002c/rgb_00027.jpg /furniture_store_0002c/sync_depth_00027.png 518.8579",
        "/nyu_office_0/rgb_00145.jpg /nyu_office_0/sync_depth_00145.png 518.8579",
    ]
    path = tmp_path / "list.txt"
    path.write_text("\n".join(lines))  # the toolbox's copy has no final newline
    frames = nyuv2_raw.read_list(path)
    assert [(f.folder, f.rgb, f.depth, f.scene) for f in frames] == [
        ("kitchen_0028b", "rgb_00045.jpg", "sync_depth_00045.png", "kitchen_0028"),
        ("furniture_store_0002c", "rgb_00027.jpg", "sync_depth_00027.png", "furniture_store_0002"),
        ("nyu_office_0", "rgb_00145.jpg", "sync_depth_00145.png", "nyu_office_0"),
    ]
    path.write_text(lines[0].replace("518.8579", "721.5377"))  # KITTI's focal: another camera
    with pytest.raises(RawFramesError, match="not NYUv2's fx"):
        nyuv2_raw.read_list(path)
