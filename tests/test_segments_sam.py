"""The segments stage with SAM (random vit_b weights) on one small image: with its quality thresholds
at 0 the generator keeps masks, which go through SAM's clean-up and become a valid label map.

SAM's image encoder always works at 1024 x 1024, so this single image costs ~25 s on a CPU: the slow tier."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_params

from depthcore.data.store import ResumableStore, Store
from depthcore.evaluation.segments import summarize_segments
from depthcore.features.segments import write_segments
from depthcore.weights.fetch_sam import fetch_sam_weights

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("offline_run")]


def test_sam_random_weights_one_image(tmp_path):
    rng = np.random.default_rng(0)
    h, w = 48, 64
    rgb = np.zeros((1, h, w, 3), np.uint8)
    rgb[0, :, : w // 2] = (200, 40, 40)
    rgb[0, :, w // 2 :] = (30, 60, 220)
    rgb[0] = np.clip(rgb[0].astype(int) + rng.integers(-20, 20, (h, w, 3)), 0, 255)
    instances = np.zeros((1, h, w), np.int32)
    instances[0, :, : w // 2] = 1
    instances[0, :, w // 2 :] = 2
    store = ResumableStore(tmp_path / "dataset.zarr", key=None)
    store.array("rgb", rgb.shape, np.uint8)[:] = rgb
    store.array("instances", instances.shape, np.int32)[:] = instances
    store.array("split", (1,), np.int8)[:] = 2
    store.mark_done(1)
    dataset = store.commit({"source": "handmade"})

    params = make_params(
        {
            "segments.method": "sam",
            "sam.points_per_side": 2,
            "sam.pred_iou_thresh": 0.0,
            "sam.stability_score_thresh": 0.0,
            "sam.min_mask_region_area": 10,
        }
    )
    fetch_sam_weights(params.sam, tmp_path / "weights", local_dir=tmp_path)
    out = write_segments(
        params.segments,
        params.sam,
        dataset,
        tmp_path / "segments.zarr",
        weights_dir=tmp_path / "weights",
        key=None,
        points_per_batch=4,
        progress=False,
    )
    group = Store(out, required=("labels",))
    labels = group.read("labels", 0)
    assert labels.shape == (h, w) and labels.dtype == np.int32
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    assert len(ids) >= 1 and counts.sum() > 0.1 * h * w  # masks were kept and cover the image
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    assert np.all(np.diff(counts) <= 0)
    # small-region clean-up: no segment keeps an island of fewer than 10 pixels
    from scipy import ndimage

    for i in ids:
        parts, n = ndimage.label(labels == i, structure=np.ones((3, 3)))
        assert n == 1 or np.bincount(parts.ravel())[1:].min() >= 10
    assert group.attrs["method"] == "sam" and group.attrs["sam"]["points_per_side"] == 2
    assert group.attrs["sam_weights"]["pretrained"] == "none"
    summary = summarize_segments(out, dataset, progress=False)
    assert summary["all"]["images"] == 1 and summary["all"]["gt_objects"] == 2
    assert 0.0 < summary["all"]["mean_best_iou"] <= 1.0
