"""Train / val / test splits: split codes, the scene-disjoint validation carve, and ``split.json``.

The dataset holds the official split (train or test); the ``split`` stage carves the validation
split from whole training scenes into ``data/prepared/split.json`` (``codes``: one code per dataset
image), so that changing ``data.split_seed`` or ``data.val_fraction`` re-runs training only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depthcore.data.store import Store
from depthcore.errors import DepthcoreError
from depthcore.io import read_json, write_json_atomic

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_CODES = {"train": TRAIN, "val": VAL, "test": TEST}
# Share of synthetic rooms held out as the test split (whole rooms, like NYUv2's scene-disjoint split).
SYNTHETIC_TEST_FRACTION = 0.25


class SplitError(DepthcoreError, ValueError):
    """A split name is unknown or the split file does not fit the dataset."""


def split_indices(codes: np.ndarray, name: str) -> np.ndarray:
    """Dataset rows (ascending) of split ``name`` ('train', 'val' or 'test') given per-image ``codes``."""
    if name not in SPLIT_CODES:
        raise SplitError(f"unknown split {name!r}; valid splits are {list(SPLIT_CODES)}")
    return np.flatnonzero(np.asarray(codes) == SPLIT_CODES[name])


def n_test_scenes(n_scenes: int) -> int:
    """How many of ``n_scenes`` synthetic rooms are test rooms (at least one, at most all but one)."""
    return min(max(1, round(SYNTHETIC_TEST_FRACTION * n_scenes)), max(n_scenes - 1, 1))


def held_out_scenes(n_scenes: int, seed: int) -> np.ndarray:
    """(n_scenes,) bool, True for the synthetic rooms held out as test, chosen by ``seed``."""
    test = np.zeros(n_scenes, dtype=bool)
    test[np.random.default_rng([seed, 7]).permutation(n_scenes)[: n_test_scenes(n_scenes)]] = True
    return test


def carve_validation(scenes: np.ndarray, official: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Split codes (N,) int8 from the official codes (N,) (TRAIN or TEST): whole training scenes moved to VAL.

    scenes: (N,) scene ids. Scenes are shuffled with ``seed`` and moved until at least ``val_fraction``
    of the training images are val, keeping at least one training scene. No scene is split.
    """
    split = np.asarray(official, dtype=np.int8).copy()
    train = split == TRAIN
    train_scenes = np.unique(np.asarray(scenes)[train])
    if val_fraction <= 0 or len(train_scenes) < 2:
        return split
    target, moved = val_fraction * int(train.sum()), 0
    for scene in np.random.default_rng(seed).permutation(train_scenes)[:-1]:
        if moved >= target:
            break
        members = train & (scenes == scene)
        split[members] = VAL
        moved += int(members.sum())
    return split


def write_split(path: Path | str, codes: np.ndarray) -> Path:
    """``split.json``: the per-image codes and the count of each split (atomic)."""
    codes = np.asarray(codes, dtype=np.int8)
    counts = {name: int((codes == code).sum()) for name, code in SPLIT_CODES.items()}
    write_json_atomic(path, {"codes": codes.tolist(), "counts": counts})
    return Path(path)


def read_split(path: Path | str, n_images: int) -> np.ndarray:
    """The (n_images,) int8 codes of ``split.json``; SplitError if it belongs to another dataset."""
    codes = np.asarray(read_json(path)["codes"], dtype=np.int8)
    if codes.shape != (n_images,):
        raise SplitError(f"{path} has {codes.size} codes for a dataset of {n_images} images: rerun `dvc repro split`")
    return codes


def write_validation_split(dataset: Path | str, out: Path | str, *, val_fraction: float, seed: int) -> Path:
    """The split stage: ``split.json`` for ``dataset``, its official split with whole training scenes moved
    to val."""
    store = Store(dataset, required=("split", "scene"))
    return write_split(out, carve_validation(store.read("scene"), store.read("split"), val_fraction, seed))
