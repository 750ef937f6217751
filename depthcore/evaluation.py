"""Evaluate stored predictions against ``dataset.zarr`` with the one NYUv2 protocol.

Shared by every stage that reports test metrics (zeroshot, evaluate): predictions are (N, 480, 640)
metres for all N dataset images; only the official test images are scored, against ``depth_eval``,
with :mod:`depthcore.metrics`. Metrics files hold numbers only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depthcore.data.splits import split_indices
from depthcore.data.store import Store
from depthcore.errors import DepthcoreError
from depthcore.io import write_csv_atomic, write_json_atomic
from depthcore.metrics import METRIC_NAMES, average, image_metrics
from depthcore.viz import save_depth_figure

PER_IMAGE_COLUMNS = ["index", "scene", "valid", *METRIC_NAMES]


def evaluate_predictions(predictions: Store, dataset: Store, *, cfg) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics of ``predictions`` (a store with ``depth``) on the test images of ``dataset``.

    cfg: the eval section. Returns the averaged metrics (METRIC_NAMES plus ``n_images``, the images with
    valid pixels) and one row per test image: ``index``, ``scene``, ``valid`` and the metrics (None
    where the image had no valid pixel).
    """
    if predictions.shape("depth") != dataset.shape("depth_eval"):
        raise ValueError(
            f"predictions have shape {predictions.shape('depth')} but the dataset's depth_eval is "
            f"{dataset.shape('depth_eval')}"
        )
    scenes = dataset.read("scene")
    per_image, rows = [], []
    for index in split_indices(dataset.read("split"), "test"):
        row = image_metrics(
            dataset.read("depth_eval", int(index)),
            predictions.read("depth", int(index)).astype(np.float32),
            min_depth=cfg.min_depth,
            max_depth=cfg.max_depth,
            median_scaling=cfg.median_scaling,
        )
        per_image.append(row)
        metrics = {name: (None if row is None else row[name]) for name in METRIC_NAMES}
        rows.append({"index": int(index), "scene": int(scenes[index]), "valid": row is not None, **metrics})
    return average(per_image), rows


def write_report(
    predictions: Store,
    dataset: Store,
    *,
    cfg,
    metrics_path: Path | str,
    figure_path: Path | str,
    figure_columns: list[tuple[str, Store]],
    per_image_path: Path | str | None = None,
) -> dict[str, Any]:
    """Score ``predictions`` on the test images and write what a stage reports; returns the metrics.

    Writes ``metrics_path`` (the metrics and ``n_images``), optionally the per-image rows as CSV, and a
    figure of the first ``cfg.figure_images`` test images (at least one: the figure is a DVC output):
    RGB | ground truth | the ``depth`` of each (name, store) of ``figure_columns``.
    """
    metrics, rows = evaluate_predictions(predictions, dataset, cfg=cfg)
    if metrics["n_images"] == 0:
        raise DepthcoreError(
            f"{predictions.path}: no test image has a valid pixel (every prediction <= {cfg.min_depth} m, or no valid "
            "ground truth): the metrics are undefined. Check the model's training curves"
        )
    write_json_atomic(metrics_path, metrics)
    if per_image_path is not None:
        write_csv_atomic(per_image_path, rows, PER_IMAGE_COLUMNS)
    print("test: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    shown = split_indices(dataset.read("split"), "test")[: max(cfg.figure_images, 1)]
    save_depth_figure(
        figure_path,
        rgb=dataset.read("rgb", shown),
        gt=dataset.read("depth_eval", shown),
        predictions=[(name, store.read("depth", shown)) for name, store in figure_columns],
        titles=[f"image {i}" for i in shown],
    )
    return metrics


def lower_bound_metrics(dataset: Store, *, cfg, seed: int) -> dict[str, float]:
    """The paper's "Lower Bound": uniform random depth in (0, max_depth] m at every pixel (seeded),
    evaluated on the test images with the same protocol."""
    rng = np.random.default_rng(seed)
    per_image = []
    for index in split_indices(dataset.read("split"), "test"):
        gt = dataset.read("depth_eval", int(index))
        pred = (cfg.max_depth * (1.0 - rng.random(gt.shape))).astype(np.float32)  # (0, max_depth]
        per_image.append(image_metrics(gt, pred, min_depth=cfg.min_depth, max_depth=cfg.max_depth))
    return average(per_image)
