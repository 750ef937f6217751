"""The segments stage with SAM (random vit_b weights) on one small image: runs and gives a valid map.

SAM's image encoder always works at 1024 x 1024, so this single image costs several seconds on a CPU."""

from __future__ import annotations

import numpy as np

from depthcore.config import SamConfig, SegmentsConfig
from depthcore.data.store import ResumableStore, open_store
from depthcore.segments import summarize_segments, write_segments


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
    store = ResumableStore(tmp_path / "dataset.zarr", fingerprint={})
    store.array("rgb", rgb.shape, np.uint8)[:] = rgb
    store.array("instances", instances.shape, np.int32)[:] = instances
    store.array("split", (1,), np.int8)[:] = 2
    dataset = store.commit({"source": "handmade"})

    # thresholds 0 so random weights still yield masks (exercising NMS, small-region removal, assembly)
    sam = SamConfig(pretrained="none", points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                    min_mask_region_area=10)  # fmt: skip
    out = write_segments(SegmentsConfig(method="sam"), sam, dataset, tmp_path / "segments.zarr",
                         weights_dir=tmp_path, progress=False)  # fmt: skip
    group = open_store(out, required=("labels",))
    labels = group["labels"][0]
    assert labels.shape == (h, w) and labels.dtype == np.int32
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    assert np.all(np.diff(counts) <= 0)
    assert group.attrs["method"] == "sam"
    assert group.attrs["sam"]["points_per_side"] == 2
    assert group.attrs["sam_weights"] == {"model": "vit_b", "pretrained": "none", "init_seed": 0, "sha256": None}
    summary = summarize_segments(out, dataset, progress=False)
    assert summary["all"]["images"] == 1 and summary["all"]["gt_objects"] == 2
    assert 0.0 <= summary["all"]["mean_best_iou"] <= 1.0
