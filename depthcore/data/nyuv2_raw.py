"""NYU Depth v2 raw frames: the BTS training list of 24,231 frames, tested on the official 654 images.

The field's depth probes (DINOv2, DINOv3, through the Monocular-Depth-Estimation-Toolbox) train on BTS's
``sync.zip``: raw Kinect frames of the 249 training scenes, RGB registered to depth, in folders
``<folder>/rgb_XXXXX.jpg`` (480 x 640 JPEG) and ``<folder>/sync_depth_XXXXX.png`` (480 x 640 16-bit PNG,
millimetres, 0 = invalid), and select 24,231 of its 36,396 frames with the list
``nyudepthv2_train_files_with_gt.txt``: one line ``/<folder>/rgb_XXXXX.jpg /<folder>/sync_depth_XXXXX.png <focal>``
per frame. They test on the official 654 images of the labelled ``.mat`` (``rawDepths``), as the ``nyuv2``
source prepares them. Facts and sources: docs/data_raw.md.

A folder is a recording; the recordings of one room carry a letter (``kitchen_0028a``, ``kitchen_0028b``): the
scene of a frame is its folder without that letter, so the validation carve never splits a room.

:class:`RawTrainingSet` reads one member of the archive at a time through the zip's central directory (no
extraction, nothing held but the current image), so ``prepare`` runs in bounded memory and resumes at any row.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from depthcore.data import nyuv2
from depthcore.data.splits import TEST, TRAIN
from depthcore.download import RemoteFile
from depthcore.errors import DepthcoreError
from depthcore.geometry.frame import NYU_INTRINSICS
from depthcore.io import sha256_of

ARCHIVE_NAME = "sync.zip"
LIST_NAME = "nyudepthv2_train_files_with_gt.txt"
BTS_TRAIN_FRAMES = 24_231  # lines of BTS's list (docs/data_raw.md)
MM_PER_METRE = 1000.0  # sync_depth_*.png unit
FOCAL_TOLERANCE_PX = 1e-3  # the list's focal must be NYUv2's fx (the intrinsics the store records)
MAX_MEMBER_BYTES = 16 << 20  # one frame file is well under 1 MB; a larger member is not a frame: refused unread
_LINE = re.compile(
    r"/?(?P<folder>[^/\s]+)/rgb_(?P<number>\d+)\.jpg /?(?P=folder)/sync_depth_(?P=number)\.png (?P<focal>\S+)"
)
_RECORDING_LETTER = re.compile(r"(?<=\d)[a-z]$")  # kitchen_0028a -> kitchen_0028


class RawFramesError(DepthcoreError, RuntimeError):
    """The archive or the list is missing, malformed, or does not hold the frames the list names."""


@dataclass(frozen=True)
class Frame:
    """One line of the list: the folder, the member names (relative to the folder) and the focal (pixels)."""

    folder: str
    rgb: str
    depth: str
    focal: float

    @property
    def scene(self) -> str:
        return scene_of(self.folder)


def scene_of(folder: str) -> str:
    """The scene (room) a recording folder belongs to: its name without the recording letter."""
    return _RECORDING_LETTER.sub("", folder)


def remote_files(settings) -> tuple[RemoteFile, RemoteFile]:
    """The list and the archive (``data.nyuv2_raw``, a NYUv2RawSource) with their pinned sizes and hashes
    (None: not published; the first download's hash is then recorded beside the file and enforced)."""
    return (
        RemoteFile(url=settings.list_url, filename=LIST_NAME, size=settings.list_size, sha256=settings.list_sha256),
        RemoteFile(
            url=settings.archive_url, filename=ARCHIVE_NAME, size=settings.archive_size, sha256=settings.archive_sha256
        ),
    )


def read_list(path: Path | str) -> list[Frame]:
    """The frames of a BTS-format list, in its order. RawFramesError naming the line if one is malformed."""
    path = Path(path)
    if not path.exists():
        raise RawFramesError(f"{path} does not exist; run the fetch_data stage first (dvc repro fetch_data)")
    frames = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line.strip())
        if match is None:
            raise RawFramesError(
                f"{path}:{number}: {line!r} is not '/<folder>/rgb_N.jpg /<folder>/sync_depth_N.png <focal>' "
                "(BTS's list format): is this nyudepthv2_train_files_with_gt.txt?"
            )
        folder, n = match["folder"], match["number"]
        try:
            focal = float(match["focal"])
        except ValueError:
            raise RawFramesError(f"{path}:{number}: focal {match['focal']!r} is not a number") from None
        if abs(focal - NYU_INTRINSICS[0]) > FOCAL_TOLERANCE_PX:
            raise RawFramesError(
                f"{path}:{number}: focal {focal} px is not NYUv2's fx {NYU_INTRINSICS[0]}: a list of another camera"
            )
        frames.append(Frame(folder=folder, rgb=f"rgb_{n}.jpg", depth=f"sync_depth_{n}.png", focal=focal))
    if not frames:
        raise RawFramesError(f"{path} lists no frames")
    return frames


def _member_key(name: str) -> str | None:
    """``<folder>/<file>`` of an archive member (whatever folders lead to it, e.g. ``sync/``); None for folders."""
    parts = name.rstrip("/").split("/")
    return None if name.endswith("/") or len(parts) < 2 else "/".join(parts[-2:])


def decode_rgb(data: bytes) -> np.ndarray:
    """A JPEG's bytes -> H x W x 3 uint8 RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decode_depth(data: bytes) -> np.ndarray:
    """A 16-bit PNG of millimetres -> H x W float32 metres, 0 = invalid."""
    with Image.open(io.BytesIO(data)) as image:
        millimetres = np.asarray(image)
    if millimetres.ndim != 2 or millimetres.dtype.kind not in "iu":
        raise ValueError(f"a depth PNG must be one integer channel, got {millimetres.dtype} {millimetres.shape}")
    return (millimetres.astype(np.float32) / np.float32(MM_PER_METRE)).astype(np.float32)


class RawTrainingSet:
    """The rows of the ``nyuv2_raw`` dataset, read from ``raw_dir`` (use as a context manager).

    Rows [0, n_train): the listed frames of ``sync.zip`` in the list's order; rows [n_train, n): the official test
    images of the labelled ``.mat`` in its order. ``sample(i)`` gives the arrays of row i (see :meth:`sample`);
    ``scene`` (n,) int32 and ``official`` (n,) int8 (TRAIN, TEST) the per-row columns; ``attrs`` what the store
    records about the inputs (the SHA-256 of the archive and list used, the counts, the scene names).
    """

    def __init__(self, raw_dir: Path | str):
        raw_dir = Path(raw_dir)
        self.frames = read_list(raw_dir / LIST_NAME)
        archive = raw_dir / ARCHIVE_NAME
        if not archive.exists():
            raise RawFramesError(f"{archive} does not exist; run `dvc repro fetch_data` or place it by hand there")
        try:
            self.zip = zipfile.ZipFile(archive)  # reads the central directory only
        except (zipfile.BadZipFile, OSError) as exc:
            raise RawFramesError(f"{archive} is not a readable zip ({exc}): delete it and rerun fetch_data") from exc
        try:
            self._members = self._index(archive)
            self.mat = nyuv2.LabeledMat(raw_dir / nyuv2.MAT_NAME)
        except BaseException:
            self.zip.close()
            raise
        try:
            self.test_rows = np.flatnonzero(~nyuv2.read_splits(raw_dir / nyuv2.SPLITS_NAME, self.mat.n))
            test_names = self.mat.scene_names()
        except BaseException:
            self.close()
            raise
        self.n_train, self.n_test = len(self.frames), int(self.test_rows.size)
        self.n = self.n_train + self.n_test
        self.height, self.width = self.mat.height, self.mat.width
        names = [f.scene for f in self.frames] + [scene_of(test_names[i]) for i in self.test_rows]
        self.scene_names = sorted(set(names))
        lookup = {name: k for k, name in enumerate(self.scene_names)}
        self.scene = np.array([lookup[name] for name in names], dtype=np.int32)
        self.official = np.array([TRAIN] * self.n_train + [TEST] * self.n_test, dtype=np.int8)
        self.attrs = {
            "scene_names": self.scene_names,
            "train_list": LIST_NAME,
            "train_list_sha256": sha256_of(raw_dir / LIST_NAME),
            "archive": ARCHIVE_NAME,
            "archive_sha256": sha256_of(archive),
            "train_frames": self.n_train,
            "test_images": self.n_test,
            # scenes with both listed frames and test images (the official split is scene-disjoint: expected empty)
            "scenes_in_train_and_test": sorted({f.scene for f in self.frames} & set(names[self.n_train :])),
            "train_depth_eval": "the training frames' depth_eval is their depth (sync_depth); they have no instances",
        }

    def _index(self, archive: Path) -> dict[str, zipfile.ZipInfo]:
        members: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            key = _member_key(info.filename)
            if key is None:
                continue
            if key in members:
                raise RawFramesError(
                    f"{archive} holds {key} twice ({members[key].filename}, {info.filename}): not BTS's sync.zip"
                )
            members[key] = info
        missing = [
            f"{f.folder}/{name}"
            for f in self.frames
            for name in (f.rgb, f.depth)
            if f"{f.folder}/{name}" not in members
        ]
        if missing:
            raise RawFramesError(
                f"{archive} lacks {len(missing)} file(s) the list names (e.g. {missing[:3]}): the archive and "
                f"{LIST_NAME} do not belong together; delete the wrong one and rerun fetch_data"
            )
        return members

    def __enter__(self) -> RawTrainingSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.zip.close()
        if hasattr(self, "mat"):
            self.mat.close()

    def __len__(self) -> int:
        return self.n

    def read_member(self, folder: str, name: str) -> bytes:
        """The bytes of one archive member (decompressed; never written to disk)."""
        info = self._members[f"{folder}/{name}"]
        if info.file_size > MAX_MEMBER_BYTES:
            raise RawFramesError(
                f"{self.zip.filename}: {info.filename} is {info.file_size} bytes, not a frame (at most "
                f"{MAX_MEMBER_BYTES}): not BTS's sync.zip"
            )
        try:
            return self.zip.read(info)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise RawFramesError(
                f"{self.zip.filename}: {info.filename} cannot be read ({exc}): the archive is corrupt; delete it and "
                "rerun fetch_data"
            ) from exc

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Row ``i``: rgb H x W x 3 uint8; depth and depth_eval H x W float32 metres, 0 = invalid; instances
        H x W int32. A training frame's depth_eval is its depth and its instances are 0 (raw frames have no
        labels); a test image is the labelled set's (depth: in-painted ``depths``, depth_eval: ``rawDepths``)."""
        if i >= self.n_train:
            return self.mat.sample(int(self.test_rows[i - self.n_train]))
        frame = self.frames[i]
        try:
            rgb = decode_rgb(self.read_member(frame.folder, frame.rgb))
            depth = decode_depth(self.read_member(frame.folder, frame.depth))
        except (OSError, ValueError) as exc:  # PIL's errors for a damaged image
            raise RawFramesError(
                f"{self.zip.filename}: frame {frame.folder}/{frame.rgb} cannot be decoded ({exc})"
            ) from exc
        for what, shape in (("rgb", rgb.shape[:2]), ("depth", depth.shape)):
            if shape != (self.height, self.width):
                raise RawFramesError(
                    f"{self.zip.filename}: {frame.folder} {what} is {shape[0]} x {shape[1]}, not the labelled set's "
                    f"{self.height} x {self.width}"
                )
        return {"rgb": rgb, "depth": depth, "depth_eval": depth, "instances": np.zeros(depth.shape, np.int32)}
