"""Score stored predictions against ``dataset.zarr`` with the one NYUv2 protocol and write what a stage reports.

Shared by every stage that reports test metrics (zeroshot_report, evaluate): predictions are (N, 480, 640)
metres for all N dataset images; only the official test images are scored, against ``depth_eval``, with
:mod:`depthcore.evaluation.metrics`. The metrics file also holds the constant train-mean depth's metrics
(``constant_mean``, :mod:`depthcore.evaluation.baselines`), so ``dvc metrics show`` says at a glance whether a
model learned anything. Metrics files hold numbers only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depthcore.data.splits import split_indices
from depthcore.data.store import Store
from depthcore.errors import DepthcoreError
from depthcore.evaluation.baselines import constant_mean_metrics
from depthcore.evaluation.figures import save_depth_figure
from depthcore.evaluation.metrics import METRIC_NAMES, evaluate
from depthcore.io import write_csv_atomic, write_json_atomic

PER_IMAGE_COLUMNS = ["index", "scene", "valid", *METRIC_NAMES]
BASELINE_KEY = "constant_mean"


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
    test = split_indices(dataset.read("split"), "test")
    pairs = ((dataset.read("depth_eval", int(i)), predictions.read("depth", int(i)).astype(np.float32)) for i in test)
    metrics, per_image = evaluate(pairs, cfg=cfg)
    scenes = dataset.read("scene")
    rows = [
        {"index": int(i), "scene": int(scenes[i]), "valid": row is not None}
        | {name: (None if row is None else row[name]) for name in METRIC_NAMES}
        for i, row in zip(test, per_image, strict=True)
    ]
    return metrics, rows


def write_report(
    predictions: Store,
    dataset: Store,
    codes: np.ndarray,
    *,
    cfg,
    metrics_path: Path | str,
    figure_path: Path | str,
    figure_columns: list[tuple[str, Store]],
    per_image_path: Path | str | None = None,
) -> dict[str, Any]:
    """Score ``predictions`` on the test images and write what a stage reports; returns the metrics.

    codes: the split code of every image (split.json), for the train-mean baseline. Writes ``metrics_path``
    (the metrics, ``n_images`` and the ``constant_mean`` baseline's metrics), optionally the per-image rows as
    CSV, and a figure of the first ``cfg.figure_images`` test images (at least one: the figure is a DVC
    output): RGB | ground truth | the ``depth`` of each (name, store) of ``figure_columns``.
    """
    metrics, rows = evaluate_predictions(predictions, dataset, cfg=cfg)
    if metrics["n_images"] == 0:
        raise DepthcoreError(
            f"{predictions.path}: no test image has a valid pixel (every prediction <= {cfg.min_depth} m, or no valid "
            "ground truth): the metrics are undefined. Check the model's training curves"
        )
    baseline = constant_mean_metrics(dataset, codes, cfg=cfg)
    write_json_atomic(metrics_path, metrics | {BASELINE_KEY: baseline})
    if per_image_path is not None:
        write_csv_atomic(per_image_path, rows, PER_IMAGE_COLUMNS)
    shown = ", ".join(f"{k} {metrics[k]:.4g} ({baseline[k]:.4g})" for k in ("abs_rel", "d1", "rmse"))
    print(f"test, {metrics['n_images']} images: {shown}; in brackets the constant train-mean depth")
    test = split_indices(dataset.read("split"), "test")[: max(cfg.figure_images, 1)]
    save_depth_figure(
        figure_path,
        rgb=dataset.read("rgb", test),
        gt=dataset.read("depth_eval", test),
        predictions=[(name, store.read("depth", test)) for name, store in figure_columns],
        titles=[f"image {i}" for i in test],
    )
    return metrics | {BASELINE_KEY: baseline}


def write_baseline_report(
    dataset: Store, codes: np.ndarray, *, cfg, metrics_path: Path | str, figure_path: Path | str
) -> dict[str, Any]:
    """The report when there are no predictions to score (a zero-shot stage of a backbone without a text
    tower): ``{constant_mean: ...}`` metrics and a figure of RGB | ground truth; returns the metrics."""
    metrics = {BASELINE_KEY: constant_mean_metrics(dataset, codes, cfg=cfg)}
    write_json_atomic(metrics_path, metrics)
    test = split_indices(dataset.read("split"), "test")[: max(cfg.figure_images, 1)]
    save_depth_figure(
        figure_path,
        rgb=dataset.read("rgb", test),
        gt=dataset.read("depth_eval", test),
        predictions=[],
        titles=[f"image {i}" for i in test],
    )
    return metrics
