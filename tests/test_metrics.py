"""The evaluation protocol against hand-computed values."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from depthcore.evaluation.metrics import METRIC_NAMES, average, evaluate, image_metrics
from depthcore.geometry.frame import EIGEN_CROP

TOP, BOTTOM, LEFT, RIGHT = EIGEN_CROP
PROTOCOL = {"min_depth": 1e-3, "max_depth": 10.0, "median_scaling": False}  # params.yaml's eval section


def metrics(gt, pred, **overrides):
    return image_metrics(gt, pred, **(PROTOCOL | overrides))


def _frame(value=0.0):
    return np.full((480, 640), value, dtype=np.float32)


def test_constant_ratio_image():
    gt, pred = _frame(2.0), _frame(2.2)
    m = metrics(gt, pred)
    assert m["d1"] == m["d2"] == m["d3"] == 1.0
    assert m["abs_rel"] == pytest.approx(0.1)
    assert m["sq_rel"] == pytest.approx(0.04 / 2.0)
    assert m["rmse"] == pytest.approx(0.2)
    assert m["rmse_log"] == pytest.approx(math.log(1.1))
    assert m["log10"] == pytest.approx(math.log10(1.1))
    assert m["silog"] == pytest.approx(0.0, abs=1e-4)  # a pure scale error is invisible to silog


def test_two_populations_and_masks():
    gt, pred = _frame(2.0), _frame(2.2)
    # inside the crop: the first 100 valid rows predict 4.0 (ratio 2: fails every delta threshold)
    pred[TOP : TOP + 100, LEFT:RIGHT] = 4.0
    # things that must not count: outside the crop, gt out of range, invalid gt, invalid prediction
    pred[:TOP] = 100.0
    pred[:, :LEFT] = 100.0
    gt[TOP + 200, LEFT:RIGHT] = 0.0
    gt[TOP + 201, LEFT:RIGHT] = 12.0
    pred[TOP + 202, LEFT:RIGHT] = 0.0
    m = metrics(gt, pred)
    n_valid = (BOTTOM - TOP - 3) * (RIGHT - LEFT)
    f = 100 * (RIGHT - LEFT) / n_valid  # share of "4.0" pixels
    assert m["d1"] == pytest.approx(1 - f)
    assert m["d3"] == pytest.approx(1 - f)  # 2 > 1.25**3 = 1.953
    assert m["abs_rel"] == pytest.approx(f * 1.0 + (1 - f) * 0.1)
    assert m["rmse"] == pytest.approx(math.sqrt(f * 4.0 + (1 - f) * 0.04))
    mean_e = f * math.log(2.0) + (1 - f) * math.log(1.1)
    mean_e2 = f * math.log(2.0) ** 2 + (1 - f) * math.log(1.1) ** 2
    assert m["silog"] == pytest.approx(100 * math.sqrt(mean_e2 - mean_e**2))
    assert m["log10"] == pytest.approx(f * math.log10(2.0) + (1 - f) * math.log10(1.1))


def test_prediction_is_clamped_to_the_depth_range():
    gt, pred = _frame(5.0), _frame(50.0)
    assert metrics(gt, pred)["abs_rel"] == pytest.approx(1.0)  # clamped to 10 m


def test_average_is_over_images_not_pixels():
    gt1, pred1 = _frame(2.0), _frame(2.2)  # abs_rel 0.1 on the full crop
    gt2, pred2 = _frame(0.0), _frame(3.0)
    gt2[TOP, LEFT] = 2.0  # a single valid pixel with abs_rel 0.5
    mean, rows = evaluate([(gt1, pred1), (gt2, pred2)], cfg=SimpleNamespace(**PROTOCOL))
    assert mean["abs_rel"] == pytest.approx((0.1 + 0.5) / 2)
    assert mean["n_images"] == 2 and len(rows) == 2
    assert set(METRIC_NAMES) <= set(mean)


def test_image_without_valid_pixels_is_skipped_and_all_invalid_gives_nan():
    assert metrics(_frame(0.0), _frame(1.0)) is None
    assert average([None, {k: 1.0 for k in METRIC_NAMES}])["n_images"] == 1
    empty = average([None])  # e.g. a model predicting 0 m everywhere: undefined, not an exception mid-training
    assert empty["n_images"] == 0 and all(math.isnan(empty[k]) for k in METRIC_NAMES)


def test_median_scaling_only_when_asked():
    gt, pred = _frame(2.0), _frame(4.0)
    assert metrics(gt, pred)["abs_rel"] == pytest.approx(1.0)
    assert metrics(gt, pred, median_scaling=True)["abs_rel"] == pytest.approx(0.0)
