"""The ``fetch_data`` and ``prepare`` steps: raw files -> ``dataset.zarr``.

``fetch_data`` downloads the official NYUv2 files (``nyuv2``; with ``nyuv2_raw`` also BTS's raw-frame archive
and training list, depthcore/data/nyuv2_raw.py), or renders the synthetic rooms into ``raw/synthetic.zarr``, and
removes everything else from the raw folder (other sources, leftovers of interrupted work). ``prepare`` streams
any source into the one dataset layout:

- ``rgb`` (N, 480, 640, 3) uint8; ``depth`` (N, 480, 640) float32 training target, metres, 0 = invalid;
  ``depth_eval`` (N, 480, 640) float32 evaluation ground truth; ``instances`` (N, 480, 640) int32;
  ``split`` (N,) int8, the official split (0 train, 2 test); ``scene`` (N,) int32;
- synthetic only: ``pair_rgb`` (N, 480, 640, 3) uint8 and ``pair_pose`` (N, 4, 4) float32;
- attrs: ``source``, ``intrinsics`` [fx, fy, cx, cy] pixels, ``depth_unit`` "m", ``version``.

``nyuv2_raw`` rows are the listed training frames (depth_eval = depth, instances 0) then the official test images.

"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from depthcore.data import nyuv2, nyuv2_raw
from depthcore.data.splits import TEST, TRAIN, held_out_scenes
from depthcore.data.store import ResumableStore, Store
from depthcore.data.synthetic import render_sample
from depthcore.download import fetch
from depthcore.geometry.frame import NYU_HEIGHT, NYU_INTRINSICS, NYU_WIDTH
from depthcore.io import prune_dir

DATASET_VERSION = 2
SYNTHETIC_RAW = "synthetic.zarr"
PROGRESS_EVERY = 8  # images between progress records in resumable stores
RAW_ARRAYS = ("rgb", "depth", "instances", "pair_rgb", "pair_pose")


def fetch_data(data, raw_dir: Path | str, *, key: str | None, progress: bool = True) -> list[Path]:
    """Make the raw inputs of ``data.source`` (a DataSection) exist in ``raw_dir``; returns their paths.

    Anything else in ``raw_dir`` (another source's files, unfinished work) is removed afterwards, so the
    folder holds exactly the current source's files. ``key``: the stage's input identity (for resuming).
    """
    raw_dir = Path(raw_dir)
    if data.source in ("nyuv2", "nyuv2_raw"):
        remotes = nyuv2.remote_files(data.nyuv2.url, data.nyuv2.splits_url)
        if data.source == "nyuv2_raw":
            remotes = (*nyuv2_raw.remote_files(data.nyuv2_raw), *remotes)
        paths = [fetch(remote, raw_dir, progress=progress) for remote in remotes]
    else:
        paths = [render_synthetic(data.synthetic, raw_dir / SYNTHETIC_RAW, key=key, progress=progress)]
    prune_dir(raw_dir, {p.name for p in paths} | {p.name + ".sha256" for p in paths})
    return paths


def render_synthetic(syn, path: Path, *, key: str | None, progress: bool = True) -> Path:
    """Render ``syn.images`` views (a SyntheticSource) into a zarr store (resumable, atomic)."""
    store = ResumableStore(path, key=key)
    n = syn.images
    arrays = {name: store.array(name, (n, *_item_shape(name)), _DTYPES[name]) for name in RAW_ARRAYS}
    scenes = np.arange(n, dtype=np.int32) // syn.views_per_room
    for i in tqdm(range(store.done, n), desc="render rooms", disable=not progress, initial=store.done, total=n):
        sample = render_sample(syn.seed, i, views_per_room=syn.views_per_room)
        for name in RAW_ARRAYS:
            arrays[name][i] = getattr(sample, name)
        if (i + 1) % PROGRESS_EVERY == 0:
            store.mark_done(i + 1)
    store.mark_done(n)
    test = held_out_scenes(math.ceil(n / syn.views_per_room), syn.seed)
    official = np.where(test[scenes], TEST, TRAIN).astype(np.int8)
    attrs = {"scene": scenes.tolist(), "official_split": official.tolist(), "settings": syn.to_dict()}
    return store.commit(attrs)


_DTYPES = {
    "rgb": np.uint8,
    "pair_rgb": np.uint8,
    "depth": np.float32,
    "depth_eval": np.float32,
    "instances": np.int32,
    "pair_pose": np.float32,
}


def _item_shape(name: str, height: int = NYU_HEIGHT, width: int = NYU_WIDTH) -> tuple[int, ...]:
    if name == "pair_pose":
        return (4, 4)
    return (height, width, 3) if name in ("rgb", "pair_rgb") else (height, width)


def prepare_dataset(source: str, raw_dir: Path | str, out: Path | str, *, key: str | None, progress=True) -> Path:
    """Build ``out`` (dataset.zarr) from the raw files of ``source``. Resumable and atomic."""
    raw_dir, out = Path(raw_dir), Path(out)
    store = ResumableStore(out, key=key)
    if source == "nyuv2":
        with nyuv2.LabeledMat(raw_dir / nyuv2.MAT_NAME) as mat:
            train = nyuv2.read_splits(raw_dir / nyuv2.SPLITS_NAME, mat.n)
            names = mat.scene_names()
            unique_names = sorted(set(names))
            scene = np.array([unique_names.index(s) for s in names], dtype=np.int32)
            official = np.where(train, TRAIN, TEST).astype(np.int8)
            _write_images(store, (mat.n, mat.height, mat.width), mat.sample, ("depth_eval", "instances"), progress)
            return _commit(store, source, scene, official, {"scene_names": unique_names})
    if source == "nyuv2_raw":
        with nyuv2_raw.RawTrainingSet(raw_dir) as frames:
            _write_images(
                store, (frames.n, frames.height, frames.width), frames.sample, ("depth_eval", "instances"), progress
            )
            return _commit(store, source, frames.scene, frames.official, frames.attrs)
    raw = Store(raw_dir / SYNTHETIC_RAW, required=RAW_ARRAYS)

    def sample(i: int) -> dict[str, np.ndarray]:
        item = {name: raw.read(name, i) for name in RAW_ARRAYS}
        return item | {"depth_eval": item["depth"]}  # rendered depth is exact: also the eval ground truth

    _write_images(store, raw.shape("depth"), sample, ("depth_eval", "instances", "pair_rgb", "pair_pose"), progress)
    scene, official = np.asarray(raw.attrs["scene"], np.int32), np.asarray(raw.attrs["official_split"], np.int8)
    return _commit(store, source, scene, official, {})


def _write_images(store: ResumableStore, shape: tuple[int, int, int], sample, extra: tuple[str, ...], progress) -> None:
    """Items [done, n) of ``sample(i)`` (a dict of arrays) into the store; shape: (n, height, width)."""
    n, h, w = shape
    names = ("rgb", "depth", *extra)
    arrays = {name: store.array(name, (n, *_item_shape(name, h, w)), _DTYPES[name]) for name in names}
    for i in tqdm(range(store.done, n), desc="prepare", disable=not progress, initial=store.done, total=n):
        item = sample(i)
        for name, array in arrays.items():
            array[i] = item[name]
        if (i + 1) % PROGRESS_EVERY == 0:
            store.mark_done(i + 1)
    store.mark_done(n)


def _commit(store: ResumableStore, source: str, scene, official, extra_attrs: dict[str, Any]) -> Path:
    store.array("scene", scene.shape, np.int32)[:] = scene
    store.array("split", official.shape, np.int8)[:] = official
    counts = {"train": int((official == TRAIN).sum()), "test": int((official == TEST).sum())}
    attrs = {
        "source": source,
        "intrinsics": list(NYU_INTRINSICS),
        "depth_unit": "m",
        "version": DATASET_VERSION,
        "n_images": int(official.size),
        "official_split_counts": counts,
        **extra_attrs,
    }
    return store.commit(attrs)
