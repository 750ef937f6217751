"""Probe3D's scale-invariant d1 and RMSE (per-image least-squares scale and shift), by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from depthcore.evaluation.metrics import image_metrics
from depthcore.evaluation.scale_invariant import centre_crop_mask, scale_invariant_metrics


def test_an_affine_map_of_the_ground_truth_scores_perfectly_and_the_crop_is_480_square():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 9.5, size=(480, 640))
    gt[::7, ::5] = 0.0  # invalid pixels
    pred = (gt - 0.3) / 2.0  # any positive scale and shift
    pred[:, :80] = 100.0  # outside the centre crop: not fitted, not scored
    si = scale_invariant_metrics(gt, pred, max_depth=10.0)
    assert si["si_rmse"] == pytest.approx(0.0, abs=1e-9) and si["si_d1"] == 1.0
    pred[:56] = 0.0  # no prediction (outside depthcore's network crop): not fitted, not scored
    cut = scale_invariant_metrics(gt, pred, max_depth=10.0)
    assert cut["si_rmse"] == pytest.approx(0.0, abs=1e-9) and cut["si_d1"] == 1.0
    mask = centre_crop_mask(480, 640)
    assert mask.sum() == 480 * 480 and mask[:, 80].all() and not mask[:, 79].any() and not mask[:, 560].any()


def test_two_by_two_by_hand():
    # valid (p, g): (1, 1), (1, 2), (2, 3); the 0 is invalid. Normal equations: [[6, 4], [4, 3]] (s, t) = (9, 6)
    # -> s = 1.5, t = 0; fitted 1.5, 1.5, 3: errors -0.5, 0.5, 0 -> RMSE sqrt(1/6); ratios 1.5, 1.33, 1 -> d1 1/3
    gt = np.array([[1.0, 2.0], [3.0, 0.0]])
    pred = np.array([[1.0, 1.0], [2.0, 5.0]])
    si = scale_invariant_metrics(gt, pred, max_depth=10.0)
    assert si["si_rmse"] == pytest.approx(math.sqrt(1 / 6)) and si["si_d1"] == pytest.approx(1 / 3)
    far = gt.copy()
    far[0, 0] = 11.0  # beyond max_depth: invalid; the rest is fitted exactly by a line through 2 points
    assert scale_invariant_metrics(far, pred, max_depth=10.0)["si_rmse"] == pytest.approx(0.0, abs=1e-12)


def test_the_evaluation_reports_them_beside_the_standard_metrics():
    gt = np.full((480, 640), 2.0)
    gt[:, 320:] = 4.0
    row = image_metrics(gt, gt / 2.0 + 0.5, min_depth=1e-3, max_depth=10.0, median_scaling=False)
    assert row["si_rmse"] == pytest.approx(0.0, abs=1e-9) and row["si_d1"] == 1.0
    assert row["d1"] < 1.0  # the standard metric sees the scale error
