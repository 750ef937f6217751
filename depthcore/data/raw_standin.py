"""An offline stand-in for the ``nyuv2_raw`` source's four files, rendered from the synthetic rooms.

It writes what ``fetch_data`` leaves in ``data/raw/`` for ``data.source: nyuv2_raw``, in the same layouts:

- ``sync.zip``: ``sync/<folder>/rgb_XXXXX.jpg`` (JPEG) and ``sync/<folder>/sync_depth_XXXXX.png`` (16-bit PNG,
  millimetres, 0 = invalid) for the training rooms, with more frames than the list names (as BTS's archive holds
  36,396 frames for a list of 24,231); room 0 is recorded twice, as folders ``room_0000a`` and ``room_0000b``;
- ``nyudepthv2_train_files_with_gt.txt``: BTS's list format, shuffled like BTS's;
- ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 layout: HDF5, axes reversed, 512-byte header) and ``splits.mat``: the
  test rooms' views as the official test images, and one training room's views as labelled training images
  (which the ``nyuv2_raw`` dataset leaves out, as the field does).

Rooms, views and depths are :func:`depthcore.data.synthetic.render_sample`'s, so the set is reproducible from
``seed``. ``python -m depthcore.data.raw_standin DIR`` writes one and prints the files' sizes and SHA-256 (the
values to pin in ``data.nyuv2_raw`` when serving it from a local server); ``prepare`` reads DIR directly.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from depthcore.data import nyuv2, nyuv2_raw
from depthcore.data.synthetic import render_sample
from depthcore.geometry.frame import NYU_HEIGHT, NYU_INTRINSICS, NYU_WIDTH
from depthcore.io import sha256_of

ARCHIVE_ROOT = "sync"  # BTS's archive unpacks into sync/<folder>/...
JPEG_QUALITY = 95
HOLE_FRACTION = 0.05  # share of pixels without depth (0) in a raw depth map, as the Kinect leaves holes
MATLAB_HEADER = b"MATLAB 7.3 MAT-file, written by depthcore.data.raw_standin"
MATLAB_USERBLOCK = 512


@dataclass(frozen=True)
class StandIn:
    """What :func:`write_raw_standin` wrote. ``train_rgb`` (n, H, W, 3) uint8 the rendered images before JPEG,
    ``train_depth_mm`` (n, H, W) uint16 the depth PNGs' content, both in the list's order; ``test_rgb``,
    ``test_depth``, ``test_raw_depth`` (metres) the labelled set's test images in row order."""

    directory: Path
    lines: tuple[str, ...]
    train_rgb: np.ndarray
    train_depth_mm: np.ndarray
    test_rgb: np.ndarray
    test_depth: np.ndarray
    test_raw_depth: np.ndarray
    unlisted: tuple[str, ...]  # archive members the list does not name

    def path(self, name: str) -> Path:
        return self.directory / name


def _holes(depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(depth.shape) < HOLE_FRACTION, 0.0, depth).astype(np.float32)


def _png16(millimetres: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(millimetres.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_labeled_mat(path: Path, rgb, depth, raw_depth, instances, scenes: list[str]) -> None:
    """A file laid out as MATLAB v7.3 stores ``nyu_depth_v2_labeled.mat``. rgb (N, H, W, 3) uint8; depth,
    raw_depth (N, H, W) float32 metres; instances (N, H, W) object ids (written as class labels, one instance
    each); scenes: one name per image."""
    with h5py.File(path, "w", userblock_size=MATLAB_USERBLOCK) as f:
        f.create_dataset("images", data=np.asarray(rgb).transpose(0, 3, 2, 1))  # (N, 3, W, H)
        f.create_dataset("depths", data=np.asarray(depth).transpose(0, 2, 1))
        f.create_dataset("rawDepths", data=np.asarray(raw_depth).transpose(0, 2, 1))
        f.create_dataset("labels", data=np.asarray(instances, np.uint16).transpose(0, 2, 1))
        f.create_dataset("instances", data=(np.asarray(instances) > 0).astype(np.uint8).transpose(0, 2, 1))
        refs = f.create_dataset("scenes", (1, len(scenes)), dtype=h5py.ref_dtype)
        for i, name in enumerate(scenes):
            chars = f.create_dataset(f"#refs#/s{i}", data=np.array([[ord(c)] for c in name], dtype=np.uint16))
            refs[0, i] = chars.ref
    with open(path, "r+b") as fh:
        fh.write(MATLAB_HEADER)


def write_raw_standin(
    directory: Path | str,
    *,
    seed: int = 0,
    train_rooms: int = 3,
    test_rooms: int = 1,
    views_per_room: int = 3,
    height: int = NYU_HEIGHT,
    width: int = NYU_WIDTH,
) -> StandIn:
    """Write the four raw files of ``nyuv2_raw`` into ``directory`` (see the module's docstring).

    Rooms 0 .. train_rooms - 1 are training rooms (in the archive; the list names all but each room's last view),
    the next ``test_rooms`` are the labelled test images, and the labelled set also holds room 0's views as
    training images. ``height`` x ``width``: image size (small for tests)."""
    if train_rooms < 2 or test_rooms < 1 or views_per_room < 2:
        raise ValueError("the stand-in needs >= 2 training rooms, >= 1 test room and >= 2 views per room")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 11])

    def view(room: int, v: int):
        return render_sample(seed, room * views_per_room + v, views_per_room=views_per_room, height=height, width=width)

    listed, unlisted, rgbs, depths_mm = [], [], [], []
    with zipfile.ZipFile(directory / nyuv2_raw.ARCHIVE_NAME, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for room in range(train_rooms):
            for v in range(views_per_room):
                folder = f"room_{room:04d}{'ab'[v % 2]}" if room == 0 else f"room_{room:04d}"
                number = 3 * v  # the list samples the recordings' frames
                sample = view(room, v)
                millimetres = np.round(_holes(sample.depth, rng) * nyuv2_raw.MM_PER_METRE).astype(np.uint16)
                rgb_name, depth_name = f"{folder}/rgb_{number:05d}.jpg", f"{folder}/sync_depth_{number:05d}.png"
                archive.writestr(f"{ARCHIVE_ROOT}/{rgb_name}", _jpeg(sample.rgb))
                archive.writestr(f"{ARCHIVE_ROOT}/{depth_name}", _png16(millimetres))
                if v == views_per_room - 1:
                    unlisted += [rgb_name, depth_name]
                    continue
                listed.append(f"/{rgb_name} /{depth_name} {NYU_INTRINSICS[0]:.4f}")
                rgbs.append(sample.rgb)
                depths_mm.append(millimetres)
    order = rng.permutation(len(listed))
    lines = tuple(listed[k] for k in order)
    (directory / nyuv2_raw.LIST_NAME).write_text("".join(line + "\n" for line in lines))

    labelled = [(0, v) for v in range(views_per_room)] + [
        (room, v) for room in range(train_rooms, train_rooms + test_rooms) for v in range(views_per_room)
    ]
    samples = [view(room, v) for room, v in labelled]
    raw_depth = np.stack([_holes(s.depth, rng) for s in samples])
    rgb = np.stack([s.rgb for s in samples])
    depth = np.stack([s.depth for s in samples])
    write_labeled_mat(
        directory / nyuv2.MAT_NAME,
        rgb,
        depth,
        raw_depth,
        np.stack([s.instances for s in samples]),
        [f"room_{room:04d}" for room, _ in labelled],
    )
    from scipy.io import savemat

    n_train_labelled = views_per_room
    savemat(
        directory / nyuv2.SPLITS_NAME,
        {
            "trainNdxs": np.arange(1, n_train_labelled + 1)[:, None],
            "testNdxs": np.arange(n_train_labelled + 1, len(labelled) + 1)[:, None],
        },
    )
    test = slice(n_train_labelled, None)
    return StandIn(
        directory=directory,
        lines=lines,
        train_rgb=np.stack([rgbs[k] for k in order]),
        train_depth_mm=np.stack([depths_mm[k] for k in order]),
        test_rgb=rgb[test],
        test_depth=depth[test],
        test_raw_depth=raw_depth[test],
        unlisted=tuple(unlisted),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="where to write the four files (created)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-rooms", type=int, default=3)
    parser.add_argument("--test-rooms", type=int, default=1)
    parser.add_argument("--views-per-room", type=int, default=3)
    args = parser.parse_args(argv)
    standin = write_raw_standin(
        args.directory,
        seed=args.seed,
        train_rooms=args.train_rooms,
        test_rooms=args.test_rooms,
        views_per_room=args.views_per_room,
    )
    for name in (nyuv2_raw.ARCHIVE_NAME, nyuv2_raw.LIST_NAME, nyuv2.MAT_NAME, nyuv2.SPLITS_NAME):
        path = standin.path(name)
        print(f"{path}  size {path.stat().st_size}  sha256 {sha256_of(path)}")
    print(
        f"{len(standin.lines)} listed training frames, {len(standin.test_rgb)} test images. Prepare them with: "
        f"python -c \"from depthcore.data.prepare import prepare_dataset; prepare_dataset('nyuv2_raw', "
        f"'{args.directory}', '{args.directory}/dataset.zarr', key=None)\""
    )


if __name__ == "__main__":
    main()
