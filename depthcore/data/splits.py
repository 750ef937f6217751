"""Train / val / test split codes and the scene-disjoint validation carve."""

from __future__ import annotations

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_CODES = {"train": TRAIN, "val": VAL, "test": TEST}


def carve_validation(scenes: np.ndarray, train: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Split codes (N,) int8: test where ``train`` is False; whole training scenes moved to val.

    scenes: (N,) int scene ids; train: (N,) bool, the official training images. Scenes are shuffled
    with ``seed`` and moved to val until at least ``val_fraction`` of the training images are val
    (at least one scene when val_fraction > 0 and there are two or more training scenes).
    No scene is ever split between train and val.
    """
    scenes = np.asarray(scenes)
    train = np.asarray(train, dtype=bool)
    split = np.where(train, TRAIN, TEST).astype(np.int8)
    train_scenes = np.unique(scenes[train])
    if val_fraction <= 0 or len(train_scenes) < 2:
        return split
    order = np.random.default_rng(seed).permutation(train_scenes)
    target = val_fraction * int(train.sum())
    moved = 0
    for scene in order[:-1]:  # keep at least one training scene
        if moved >= target:
            break
        members = train & (scenes == scene)
        split[members] = VAL
        moved += int(members.sum())
    return split


def split_by_scene(n_scenes: int, test_fraction: float, seed: int) -> np.ndarray:
    """(n_scenes,) bool, True for the scenes held out as test (at least one, at most n_scenes - 1)."""
    n_test = min(max(1, round(test_fraction * n_scenes)), max(n_scenes - 1, 1))
    test = np.zeros(n_scenes, dtype=bool)
    test[np.random.default_rng([seed, 7]).permutation(n_scenes)[:n_test]] = True
    return test
