"""The NYUv2 evaluation protocol: one implementation, used by every stage.

Per image (ground truth ``depth_eval`` at 480 x 640): a pixel is valid when
``min_depth < gt < max_depth``, ``pred > min_depth`` and it lies inside the Eigen crop; the
prediction is clamped to ``[min_depth, max_depth]``; then

- d1, d2, d3: share of pixels with ``max(p/g, g/p) < 1.25**k``
- abs_rel = mean(|g - p| / g); sq_rel = mean((g - p)**2 / g)
- rmse = sqrt(mean((g - p)**2)) (metres); rmse_log = sqrt(mean((ln g - ln p)**2))
- log10 = mean(|log10 g - log10 p|)
- silog = 100 * sqrt(mean(e**2) - mean(e)**2) with e = ln p - ln g (scale-invariant log error)

Metrics are computed per image and then averaged over images. With ``median_scaling`` the
prediction is multiplied by median(g) / median(p) over the valid pixels before clamping.

Besides these, Probe3D's scale-invariant ``si_d1`` and ``si_rmse``
(:mod:`depthcore.evaluation.scale_invariant`: the unclamped prediction fitted per image by least-squares scale and
shift on the 480 x 480 centre crop, 0 < g <= max_depth; no Eigen crop, no median scaling); NaN for an image
without a valid pixel there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from depthcore.evaluation.scale_invariant import SI_METRIC_NAMES, scale_invariant_metrics
from depthcore.geometry.frame import EIGEN_CROP, NYU_HEIGHT, NYU_WIDTH

METRIC_NAMES = ("d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", *SI_METRIC_NAMES)
DELTA_BASE = 1.25


def eigen_crop_mask(height: int, width: int) -> np.ndarray:
    """H x W bool, True inside the Eigen crop (defined on the 480 x 640 frame; scaled for other sizes)."""
    top, bottom, left, right = EIGEN_CROP
    sy, sx = height / NYU_HEIGHT, width / NYU_WIDTH
    mask = np.zeros((height, width), dtype=bool)
    mask[round(top * sy) : round(bottom * sy), round(left * sx) : round(right * sx)] = True
    return mask


def valid_mask(gt: np.ndarray, pred: np.ndarray, *, min_depth: float, max_depth: float) -> np.ndarray:
    """H x W bool: the pixels that count (depth range, valid prediction, Eigen crop)."""
    return (gt > min_depth) & (gt < max_depth) & (pred > min_depth) & eigen_crop_mask(*gt.shape)


def image_metrics(
    gt: np.ndarray, pred: np.ndarray, *, min_depth: float, max_depth: float, median_scaling: bool
) -> dict[str, float] | None:
    """Metrics of one image. gt, pred: H x W metres (0 = invalid); the depth range in metres (the eval
    section's). None if no pixel is valid."""
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    mask = valid_mask(gt, pred, min_depth=min_depth, max_depth=max_depth)
    if not mask.any():
        return None
    si = scale_invariant_metrics(gt, pred, max_depth=max_depth) or dict.fromkeys(SI_METRIC_NAMES, math.nan)
    g = gt[mask].astype(np.float64)
    p = pred[mask].astype(np.float64)
    if median_scaling:
        p = p * (np.median(g) / np.median(p))
    p = np.clip(p, min_depth, max_depth)
    ratio = np.maximum(p / g, g / p)
    err_log = np.log(p) - np.log(g)
    return {
        "d1": float(np.mean(ratio < DELTA_BASE)),
        "d2": float(np.mean(ratio < DELTA_BASE**2)),
        "d3": float(np.mean(ratio < DELTA_BASE**3)),
        "abs_rel": float(np.mean(np.abs(g - p) / g)),
        "sq_rel": float(np.mean((g - p) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((g - p) ** 2))),
        "rmse_log": float(np.sqrt(np.mean(err_log**2))),
        "log10": float(np.mean(np.abs(np.log10(g) - np.log10(p)))),
        "silog": float(100.0 * np.sqrt(max(np.mean(err_log**2) - np.mean(err_log) ** 2, 0.0))),
    } | si


def average(per_image: Iterable[dict[str, float] | None]) -> dict[str, float]:
    """Mean of per-image metrics over the images that had valid pixels, plus ``n_images``; NaN metrics and
    ``n_images`` 0 when no image had one (e.g. a model predicting 0 m everywhere)."""
    rows = [row for row in per_image if row is not None]
    out = {name: float(np.mean([row[name] for row in rows])) if rows else math.nan for name in METRIC_NAMES}
    out["n_images"] = len(rows)
    return out


def evaluate(pairs: Iterable[tuple[np.ndarray, np.ndarray]], *, cfg) -> tuple[dict[str, float], list]:
    """Averaged metrics and the per-image rows (None where no pixel is valid) of (ground truth, prediction)
    pairs, H x W metres each; ``cfg``: the eval section (``min_depth``, ``max_depth``, ``median_scaling``)."""
    rows = [
        image_metrics(gt, pred, min_depth=cfg.min_depth, max_depth=cfg.max_depth, median_scaling=cfg.median_scaling)
        for gt, pred in pairs
    ]
    return average(rows), rows
