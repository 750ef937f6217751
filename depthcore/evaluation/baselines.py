"""Predictors that learn nothing from images, scored with the same protocol: what a trained model must beat.

- the constant train-mean depth: every pixel of the DepthCLIP crop predicts the mean valid ``depth`` of the
  training images (pasted into the frame like every model's prediction, so it is scored on the same pixels);
  ``evaluate`` and ``zeroshot_report`` report it beside the model;
- the paper's "Lower Bound": uniform random depth in (0, max_depth] m at every pixel (seeded).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from depthcore.data.splits import split_indices
from depthcore.data.store import Store
from depthcore.evaluation.metrics import evaluate
from depthcore.geometry.frame import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_WIDTH


def train_mean_depth(dataset: Store, codes: np.ndarray) -> float:
    """Mean of the valid (positive, finite) training-target ``depth`` pixels over the training images, metres.

    codes: the split code of every dataset image (split.json)."""
    total, count = 0.0, 0
    for index in split_indices(codes, "train"):
        depth = dataset.read("depth", int(index)).astype(np.float64)
        valid = np.isfinite(depth) & (depth > 0)
        total, count = total + float(depth[valid].sum()), count + int(valid.sum())
    if count == 0:
        raise ValueError("the training images hold no valid depth pixel")
    return total / count


def _test_pairs(dataset: Store, predict) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for index in split_indices(dataset.read("split"), "test"):
        gt = dataset.read("depth_eval", int(index))
        yield gt, predict(gt.shape)


def constant_mean_metrics(dataset: Store, codes: np.ndarray, *, cfg) -> dict[str, Any]:
    """Test metrics of the constant train-mean depth (see the module docstring), plus ``depth_m``: the constant."""
    mean = train_mean_depth(dataset, codes)
    top, bottom, left, right = DEPTHCLIP_CROP
    frame = np.zeros((NYU_HEIGHT, NYU_WIDTH), dtype=np.float32)
    frame[top:bottom, left:right] = mean
    metrics, _ = evaluate(_test_pairs(dataset, lambda shape: frame), cfg=cfg)
    return metrics | {"depth_m": mean}


def lower_bound_metrics(dataset: Store, *, cfg, seed: int) -> dict[str, float]:
    """Test metrics of uniform random depth in (0, max_depth] m at every pixel, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    return evaluate(
        _test_pairs(dataset, lambda shape: (cfg.max_depth * (1.0 - rng.random(shape))).astype(np.float32)), cfg=cfg
    )[0]
