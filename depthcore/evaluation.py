"""Evaluate stored predictions against ``dataset.zarr`` with the one NYUv2 protocol.

Shared by every stage that reports metrics (zeroshot, evaluate): predictions are (N, 480, 640)
metres for all N dataset images; only the images of the chosen split are scored, against
``depth_eval``, with :mod:`depthcore.metrics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depthcore.config import EvalConfig
from depthcore.data.splits import SPLIT_CODES
from depthcore.data.store import write_csv_atomic, write_json_atomic
from depthcore.metrics import METRIC_NAMES, average, image_metrics
from depthcore.viz import save_depth_figure


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


def write_report(
    predictions,
    dataset,
    *,
    cfg: EvalConfig,
    metrics_path: Path | str,
    figure_path: Path | str,
    figure_columns: list[tuple[str, Any]],
    extra: dict[str, Any] | None = None,
    per_image_path: Path | str | None = None,
    split: str = "test",
) -> dict[str, Any]:
    """Score ``predictions`` on ``split`` and write what a stage reports; returns the metrics.

    Writes ``metrics_path`` (metrics, ``n_images``, ``split`` and ``extra``), optionally the per-image
    rows as CSV, and a figure of the first ``cfg.figure_images`` split images (at least one: the figure
    is a DVC output): RGB | ground truth | each (name, (N, 480, 640) array) of ``figure_columns``.
    """
    metrics, rows = evaluate_predictions(predictions, dataset, cfg=cfg, split=split)
    write_json_atomic(metrics_path, {**metrics, "split": split, **(extra or {})})
    if per_image_path is not None:
        write_csv_atomic(per_image_path, rows)
    print(f"{split}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    shown = split_indices(dataset, split)[: max(cfg.figure_images, 1)]
    save_depth_figure(
        figure_path,
        rgb=dataset["rgb"].get_orthogonal_selection((shown,)),
        gt=dataset["depth_eval"].get_orthogonal_selection((shown,)),
        predictions=[(name, array.get_orthogonal_selection((shown,))) for name, array in figure_columns],
        titles=[f"image {i}" for i in shown],
    )
    return metrics
