"""Evaluate stored predictions against ``dataset.zarr`` with the one NYUv2 protocol.

Shared by every stage that reports metrics (zeroshot, evaluate): predictions are (N, 480, 640)
metres for all N dataset images; only the images of the chosen split are scored, against
``depth_eval``, with :mod:`depthcore.metrics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from depthcore.config import EvalConfig
from depthcore.data.splits import SPLIT_CODES
from depthcore.metrics import METRIC_NAMES, average, image_metrics


def split_indices(dataset, split: str) -> np.ndarray:
    """Dataset indices (ascending) of the images in ``split`` ('train', 'val' or 'test')."""
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; valid splits are {list(SPLIT_CODES)}")
    return np.flatnonzero(np.asarray(dataset["split"][:]) == SPLIT_CODES[split])


def evaluate_predictions(
    predictions, dataset, *, cfg: EvalConfig, split: str = "test"
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics of ``predictions`` on ``split``.

    predictions: (N, H, W) array-like (numpy or zarr) in metres, one per dataset image;
    dataset: the open dataset.zarr group. Returns the averaged metrics (METRIC_NAMES plus
    ``n_images``, the images with valid pixels) and one row per split image: ``index``, ``scene``,
    ``valid`` (bool) and the metrics (None where the image had no valid pixel).
    """
    gt_array = dataset["depth_eval"]
    if tuple(predictions.shape) != tuple(gt_array.shape):
        raise ValueError(
            f"predictions have shape {tuple(predictions.shape)} but the dataset's depth_eval is {tuple(gt_array.shape)}"
        )
    indices = split_indices(dataset, split)
    if len(indices) == 0:
        raise ValueError(f"the dataset has no {split} images to evaluate")
    scenes = np.asarray(dataset["scene"][:])
    per_image, rows = [], []
    for index in indices:
        row = image_metrics(
            np.asarray(gt_array[index]),
            np.asarray(predictions[index], dtype=np.float32),
            min_depth=cfg.min_depth,
            max_depth=cfg.max_depth,
            median_scaling=cfg.median_scaling,
        )
        per_image.append(row)
        rows.append(
            {
                "index": int(index),
                "scene": int(scenes[index]),
                "valid": row is not None,
                **{name: (None if row is None else row[name]) for name in METRIC_NAMES},
            }
        )
    return average(per_image), rows
