"""The ``fetch_data`` and ``prepare`` steps: raw files -> ``dataset.zarr`` (see DESIGN.md contract).

``fetch_data`` downloads the official NYUv2 files, or renders the synthetic rooms into
``raw/synthetic.zarr``. ``prepare`` streams either into the one dataset layout:

- ``rgb`` (N, H, W, 3) uint8; ``depth`` (N, H, W) float32 training target, metres, 0 = invalid;
  ``depth_eval`` (N, H, W) float32 evaluation ground truth; ``instances`` (N, H, W) int32;
  ``split`` (N,) int8 (0 train, 1 val, 2 test); ``scene`` (N,) int32;
- synthetic only: ``pair_rgb`` (N, H, W, 3) uint8 and ``pair_pose`` (N, 4, 4) float32;
- attrs: ``source``, ``intrinsics`` [fx, fy, cx, cy] pixels, ``depth_unit`` "m", ``version``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from depthcore.config import DataConfig
from depthcore.data import nyuv2
from depthcore.data.splits import carve_validation, split_by_scene
from depthcore.data.store import ResumableStore, StoreError, open_store
from depthcore.data.synthetic import SYNTHETIC_TEST_FRACTION, intrinsics_for, render_sample
from depthcore.download import fetch
from depthcore.geometry import NYU_INTRINSICS

DATASET_VERSION = 1
SYNTHETIC_RAW = "synthetic.zarr"
PROGRESS_EVERY = 8  # images between progress records in resumable stores


def fetch_data(cfg: DataConfig, raw_dir: Path | str, *, progress: bool = True) -> list[Path]:
    """Make the raw inputs of ``cfg.source`` exist in ``raw_dir``; returns their paths."""
    raw_dir = Path(raw_dir)
    if cfg.source == "nyuv2":
        return [
            fetch(remote, raw_dir, progress=progress)
            for remote in nyuv2.remote_files(cfg.nyuv2.url, cfg.nyuv2.splits_url)
        ]
    return [render_synthetic(cfg, raw_dir / SYNTHETIC_RAW, progress=progress)]


def render_synthetic(cfg: DataConfig, path: Path, *, progress: bool = True) -> Path:
    """Render ``cfg.synthetic.images`` rooms into a zarr store (resumable, atomic)."""
    syn = cfg.synthetic
    fingerprint = {"synthetic": syn.to_dict(), "version": DATASET_VERSION}
    if path.exists():
        try:
            if open_store(path).attrs.get("synthetic") == fingerprint:
                return path
        except StoreError:
            pass
    store = ResumableStore(path, fingerprint=fingerprint)
    n, h, w = syn.images, syn.height, syn.width
    arrays = {
        "rgb": store.array("rgb", (n, h, w, 3), np.uint8),
        "depth": store.array("depth", (n, h, w), np.float32),
        "instances": store.array("instances", (n, h, w), np.int32),
        "pair_rgb": store.array("pair_rgb", (n, h, w, 3), np.uint8),
        "pair_pose": store.array("pair_pose", (n, 4, 4), np.float32),
        "scene": store.array("scene", (n,), np.int32, chunks=(n,)),
    }
    scenes = np.arange(n, dtype=np.int32) // syn.views_per_room
    arrays["scene"][:] = scenes
    for i in tqdm(range(store.done, n), desc="render rooms", disable=not progress, initial=store.done, total=n):
        sample = render_sample(syn.seed, i, height=h, width=w, views_per_room=syn.views_per_room)
        for name in ("rgb", "depth", "instances", "pair_rgb", "pair_pose"):
            arrays[name][i] = getattr(sample, name)
        if (i + 1) % PROGRESS_EVERY == 0:
            store.mark_done(i + 1)
    return store.commit({"synthetic": fingerprint, "intrinsics": list(intrinsics_for(h, w))})


def prepare_dataset(cfg: DataConfig, raw_dir: Path | str, out: Path | str, *, progress: bool = True) -> Path:
    """Build ``out`` (dataset.zarr) from the raw files of ``cfg.source``. Resumable and atomic."""
    raw_dir, out = Path(raw_dir), Path(out)
    if cfg.source == "nyuv2":
        return _prepare_nyuv2(cfg, raw_dir, out, progress)
    return _prepare_synthetic(cfg, raw_dir, out, progress)


def _common_attrs(cfg: DataConfig, intrinsics, height: int, width: int, split: np.ndarray) -> dict[str, Any]:
    return {
        "source": cfg.source,
        "intrinsics": [float(v) for v in intrinsics],
        "depth_unit": "m",
        "version": DATASET_VERSION,
        "height": int(height),
        "width": int(width),
        "n_images": int(split.size),
        "split_counts": {name: int((split == code).sum()) for name, code in (("train", 0), ("val", 1), ("test", 2))},
        "val_fraction": cfg.val_fraction,
        "split_seed": cfg.split_seed,
    }


def _prepare_nyuv2(cfg: DataConfig, raw_dir: Path, out: Path, progress: bool) -> Path:
    mat_path = raw_dir / nyuv2.MAT_NAME
    splits_path = raw_dir / nyuv2.SPLITS_NAME
    if not splits_path.exists():
        raise nyuv2.NYUv2Error(f"{splits_path} does not exist; run `dvc repro fetch_data` first")
    with nyuv2.LabeledMat(mat_path) as mat:
        train = nyuv2.read_splits(splits_path, mat.n)
        names = mat.scene_names()
        unique_names = sorted(set(names))
        scene = np.array([unique_names.index(s) for s in names], dtype=np.int32)
        split = carve_validation(scene, train, cfg.val_fraction, cfg.split_seed)
        fingerprint = {
            "source": "nyuv2",
            "mat_size": mat_path.stat().st_size,
            "mat_mtime": mat_path.stat().st_mtime_ns,
            "val_fraction": cfg.val_fraction,
            "split_seed": cfg.split_seed,
            "version": DATASET_VERSION,
        }
        store = ResumableStore(out, fingerprint=fingerprint)
        n, h, w = mat.n, mat.height, mat.width
        arrays = _dataset_arrays(store, n, h, w)
        arrays["split"][:] = split
        arrays["scene"][:] = scene
        for i in tqdm(range(store.done, n), desc="prepare nyuv2", disable=not progress, initial=store.done, total=n):
            for name, value in mat.sample(i).items():
                arrays[name][i] = value
            if (i + 1) % PROGRESS_EVERY == 0:
                store.mark_done(i + 1)
        attrs = _common_attrs(cfg, NYU_INTRINSICS, h, w, split)
        attrs["scene_names"] = unique_names
        return store.commit(attrs)


def _dataset_arrays(store: ResumableStore, n: int, h: int, w: int) -> dict[str, Any]:
    return {
        "rgb": store.array("rgb", (n, h, w, 3), np.uint8),
        "depth": store.array("depth", (n, h, w), np.float32),
        "depth_eval": store.array("depth_eval", (n, h, w), np.float32),
        "instances": store.array("instances", (n, h, w), np.int32),
        "split": store.array("split", (n,), np.int8, chunks=(n,)),
        "scene": store.array("scene", (n,), np.int32, chunks=(n,)),
    }


def _prepare_synthetic(cfg: DataConfig, raw_dir: Path, out: Path, progress: bool) -> Path:
    raw = open_store(raw_dir / SYNTHETIC_RAW, required=("rgb", "depth", "instances", "pair_rgb", "pair_pose"))
    if raw.attrs.get("synthetic", {}).get("synthetic") != cfg.synthetic.to_dict():
        raise StoreError(
            f"{raw_dir / SYNTHETIC_RAW} was rendered with other data.synthetic params than params.yaml; "
            "rerun `dvc repro fetch_data`"
        )
    n, h, w = raw["depth"].shape
    scene = np.asarray(raw["scene"][:])
    n_scenes = int(scene.max()) + 1
    test_scene = split_by_scene(n_scenes, SYNTHETIC_TEST_FRACTION, cfg.split_seed)
    split = carve_validation(scene, ~test_scene[scene], cfg.val_fraction, cfg.split_seed)
    fingerprint = {
        "source": "synthetic",
        "raw": raw.attrs["synthetic"],
        "val_fraction": cfg.val_fraction,
        "split_seed": cfg.split_seed,
        "version": DATASET_VERSION,
    }
    store = ResumableStore(out, fingerprint=fingerprint)
    arrays = _dataset_arrays(store, n, h, w)
    arrays["pair_rgb"] = store.array("pair_rgb", (n, h, w, 3), np.uint8)
    arrays["pair_pose"] = store.array("pair_pose", (n, 4, 4), np.float32)
    arrays["split"][:] = split
    arrays["scene"][:] = scene
    for i in tqdm(range(store.done, n), desc="prepare synthetic", disable=not progress, initial=store.done, total=n):
        depth = raw["depth"][i]
        arrays["rgb"][i] = raw["rgb"][i]
        arrays["depth"][i] = depth
        arrays["depth_eval"][i] = depth  # rendered depth is exact: the same map is the eval ground truth
        arrays["instances"][i] = raw["instances"][i]
        arrays["pair_rgb"][i] = raw["pair_rgb"][i]
        arrays["pair_pose"][i] = raw["pair_pose"][i]
        if (i + 1) % PROGRESS_EVERY == 0:
            store.mark_done(i + 1)
    return store.commit(_common_attrs(cfg, raw.attrs["intrinsics"], h, w, split))
