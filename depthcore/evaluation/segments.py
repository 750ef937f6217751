"""The segments_report stage: how many segments the segment maps hold, how much of each image they cover and
how well they match the ground-truth objects (``metrics/segments.json``, numbers only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from depthcore.data.splits import TEST
from depthcore.data.store import Store, StoreError
from depthcore.io import write_json_atomic

IOU_MATCH = 0.5  # best IoU at which a ground-truth object counts as found


@dataclass(frozen=True)
class ImageAlignment:
    """Statistics of one label map: segment count, covered fraction, best IoU of each GT object."""

    segments: int
    coverage: float
    best_iou: np.ndarray  # one value per ground-truth object (empty without instances)


def image_alignment(labels: np.ndarray, instances: np.ndarray | None = None) -> ImageAlignment:
    """Compare a label map (H x W, 0 = none) with ground-truth objects (H x W, 0 = unlabelled).

    best_iou[j] = max over segments s of |G_j & S_s| / |G_j | S_s| for the j-th object (objects in
    increasing id order); 0 where no segment touches it. Segments are counted whole, including
    their pixels on unlabelled ground truth.
    """
    seg_ids, seg_inv = np.unique(labels, return_inverse=True)
    n_segments = int(np.count_nonzero(seg_ids))
    coverage = float(np.count_nonzero(labels)) / labels.size
    if instances is None:
        return ImageAlignment(n_segments, coverage, np.zeros(0))
    if instances.shape != labels.shape:
        raise StoreError(f"labels {labels.shape} and instances {instances.shape} differ in shape")
    gt_ids, gt_inv = np.unique(instances, return_inverse=True)
    joint = np.bincount(gt_inv.ravel() * len(seg_ids) + seg_inv.ravel(), minlength=len(gt_ids) * len(seg_ids)).reshape(
        len(gt_ids), len(seg_ids)
    )
    union = joint.sum(1, keepdims=True) + joint.sum(0, keepdims=True) - joint
    iou = joint / np.maximum(union, 1)
    objects = iou[gt_ids != 0][:, seg_ids != 0]
    best = objects.max(axis=1) if objects.shape[1] else np.zeros(objects.shape[0])
    return ImageAlignment(n_segments, coverage, best.astype(np.float64))


def summarize_alignment(per_image: Sequence[ImageAlignment]) -> dict[str, Any]:
    """Aggregate image statistics: segments per image (mean, median), mean coverage, and, over all
    ground-truth objects pooled, mean best IoU and the fraction found at IoU >= ``IOU_MATCH``."""
    if not per_image:
        return {"images": 0}
    counts = np.array([a.segments for a in per_image], dtype=np.float64)
    ious = np.concatenate([a.best_iou for a in per_image])
    summary: dict[str, Any] = {
        "images": len(per_image),
        "segments_per_image_mean": float(counts.mean()),
        "segments_per_image_median": float(np.median(counts)),
        "coverage": float(np.mean([a.coverage for a in per_image])),
        "gt_objects": int(ious.size),
    }
    if ious.size:
        summary["mean_best_iou"] = float(ious.mean())
        summary[f"objects_found_iou{IOU_MATCH:g}"] = float(np.mean(ious >= IOU_MATCH))
    return summary


def summarize_segments(segments: Path | str, dataset: Path | str, *, progress: bool = True) -> dict[str, Any]:
    """The metrics/segments.json summary (numbers only): :func:`summarize_alignment` over all images
    ("all") and over the test split ("test"). GT alignment keys appear only when the dataset has
    ``instances``."""
    labels = Store(segments, required=("labels",))
    data = Store(dataset, required=("split",))
    split = data.read("split")
    if labels.shape("labels")[0] != split.shape[0]:
        raise StoreError(
            f"{segments} has {labels.shape('labels')[0]} label maps but {dataset} has {split.shape[0]} images; "
            "rerun the segments stage"
        )
    has_gt = "instances" in data
    per_image = [
        image_alignment(labels.read("labels", i), data.read("instances", i) if has_gt else None)
        for i in tqdm(range(split.shape[0]), desc="segments summary", disable=not progress)
    ]
    return {
        "all": summarize_alignment(per_image),
        "test": summarize_alignment([a for a, s in zip(per_image, split, strict=True) if s == TEST]),
    }


def write_segments_report(segments: Path | str, dataset: Path | str, out: Path | str) -> dict[str, Any]:
    """The segments_report stage: :func:`summarize_segments` written to ``out`` (metrics/segments.json)."""
    summary = summarize_segments(segments, dataset)
    write_json_atomic(out, summary)
    return summary
