"""Probe3D's scale-invariant depth metrics: d1 and RMSE after a per-image least-squares scale and shift.

From mbanani/probe3d @ a1f14640076e38b8bc07b66d0fe2d01d15691e9d (facts only): ``evals/datasets/nyu.py`` (``NYU_test``
with ``center_crop: True``, ``configs/dataset/nyu.yaml``: the 480 x 640 frame cut to columns 80..559, a 480 x 480
centre crop; ground truth beyond 10 m set to 0), ``evals/utils/metrics.py`` (``match_scale_and_shift``: depth, not
inverse depth, fitted over the pixels with gt > 0: minimise sum (s p + t - g)^2 by the 2 x 2 normal equations;
scale 1 and shift 0 where they are singular; ``evaluate_depth``: no Eigen crop (``nyu_crop=False``), the fitted
prediction not clamped, d1 = share of valid pixels with max(g / max(p, 1e-9), p / max(g, 1e-9)) < 1.25, RMSE =
sqrt(mean (g - p)^2), both per image, then averaged over images) and ``train_depth.py`` (the test pass with
``scale_invariant=True``).

Here: gt and pred are the 480 x 640 frame (metres, 0 = invalid); a pixel counts when it is in the centre crop,
0 < gt <= ``max_depth`` (eval.max_depth: Probe3D's 10 m), and it has a prediction (pred > 0: depthcore's stored
predictions are 0 outside the 416 x 544 network crop, rows 56..471 and columns 60..603, and positive inside; so
the scored region is rows 56..471 of columns 80..559).
"""

from __future__ import annotations

import numpy as np

from depthcore.geometry.frame import NYU_HEIGHT, NYU_WIDTH

SI_CROP_SIZE = 480  # Probe3D's square centre crop of the 480 x 640 frame (columns 80..559)
SI_METRIC_NAMES = ("si_d1", "si_rmse")
DELTA = 1.25
RATIO_FLOOR = 1e-9  # Probe3D's clamp of the ratio's denominators


def centre_crop_mask(height: int, width: int) -> np.ndarray:
    """H x W bool: the 480 x 480 centre crop of the 480 x 640 frame (scaled for other frame sizes)."""
    sy, sx = height / NYU_HEIGHT, width / NYU_WIDTH
    top, left = round((NYU_HEIGHT - SI_CROP_SIZE) / 2 * sy), round((NYU_WIDTH - SI_CROP_SIZE) / 2 * sx)
    mask = np.zeros((height, width), dtype=bool)
    mask[top : height - top, left : width - left] = True
    return mask


def fit_scale_shift(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(s, t) minimising sum (s pred + t - gt)^2 over paired 1-D arrays (float64); (1, 0) when the normal
    equations are singular (e.g. a constant prediction)."""
    a00, a01, a11 = float(np.sum(pred * pred)), float(np.sum(pred)), float(pred.size)
    b0, b1 = float(np.sum(pred * gt)), float(np.sum(gt))
    det = a00 * a11 - a01 * a01
    if det == 0:
        return 1.0, 0.0
    return (a11 * b0 - a01 * b1) / det, (a00 * b1 - a01 * b0) / det


def scale_invariant_metrics(gt: np.ndarray, pred: np.ndarray, *, max_depth: float) -> dict[str, float] | None:
    """``si_d1`` and ``si_rmse`` (metres) of one image after the least-squares scale and shift of ``pred`` onto
    ``gt`` over the valid pixels of the centre crop. gt, pred: H x W metres. None if no pixel is valid."""
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    mask = centre_crop_mask(*gt.shape) & np.isfinite(gt) & (gt > 0) & (gt <= max_depth) & np.isfinite(pred)
    mask &= pred > 0
    if not mask.any():
        return None
    g, p = gt[mask].astype(np.float64), pred[mask].astype(np.float64)
    scale, shift = fit_scale_shift(p, g)
    p = scale * p + shift
    ratio = np.maximum(g / np.maximum(p, RATIO_FLOOR), p / np.maximum(g, RATIO_FLOOR))
    return {"si_d1": float(np.mean(ratio < DELTA)), "si_rmse": float(np.sqrt(np.mean((g - p) ** 2)))}
