"""Per-pixel segment maps from SAM's automatic masks, the ground truth, or superpixels.

Every segmenter returns a label map ``H x W int32`` at the image's resolution with one convention:

- ``0`` = the pixel lies in no segment;
- ids ``1..K`` are contiguous and ordered by the segment's pixel area in the final map, largest
  first (ties: the segment that was larger, or listed first, before overlaps were resolved);
- where masks overlap, the **smaller mask wins** (it is the more specific one: a cup on a table
  keeps its pixels rather than being swallowed by the table). A mask that ends up with no visible
  pixel gets no id.

Methods (``segments.method``): ``sam`` (SamAutomaticMaskGenerator, knobs in the ``sam`` section),
``gt`` (the dataset's ``instances``: what a perfect segmenter would give), ``felzenszwalb``
(scikit-image graph-based superpixels) and ``none`` (all zeros, for the ablation without segments).

:func:`write_segments` runs one of them over a prepared dataset into ``segments.zarr`` (``labels``
N x H x W int32, attrs = the segmenter settings); the segments_report stage summarises them
(:mod:`depthcore.evaluation.segments`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import felzenszwalb
from tqdm import tqdm

from depthcore.data.store import ResumableStore, Store
from depthcore.device import default_device
from depthcore.errors import DepthcoreError
from depthcore.weights.manifest import read_manifest

SEGMENTS_VERSION = 2
SEGMENT_METHODS = ("sam", "gt", "felzenszwalb", "none")
CONNECTIVITY_8 = np.ones((3, 3), dtype=bool)

Segmenter = Callable[[np.ndarray, np.ndarray | None], np.ndarray]
"""(rgb H x W x 3 uint8, instances H x W int32 or None) -> labels H x W int32."""


class SegmentsError(DepthcoreError, ValueError):
    """The segmenter cannot run on this input (unknown method, dataset lacking instances, ...)."""


# ------------------------------------------------------------------------------------ label maps
def relabel_by_area(labels: np.ndarray) -> np.ndarray:
    """Renumber a label map (0 = none, any positive ids) to 1..K by pixel area, largest first.

    labels: H x W integer. Ties in area keep the order of the old ids. Returns H x W int32.
    """
    if labels.size and labels.min() < 0:
        raise SegmentsError(f"label maps must be >= 0 (0 = no segment); got a minimum of {labels.min()}")
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    fg = np.flatnonzero(ids != 0)
    order = np.lexsort((ids[fg], -counts[fg]))  # area descending, then old id ascending
    lut = np.zeros(len(ids), dtype=np.int32)
    lut[fg[order]] = np.arange(1, len(fg) + 1, dtype=np.int32)
    return lut[inverse].reshape(labels.shape)


def assemble_labels(masks: Sequence[np.ndarray] | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Label map from possibly overlapping binary masks (K x H x W bool); smaller masks win overlaps.

    Masks are painted from the largest to the smallest (equal areas: in the order given, so the
    later one wins), then renumbered by their visible area with :func:`relabel_by_area`. An empty
    list gives all zeros. Returns H x W int32.
    """
    canvas = np.zeros(shape, dtype=np.int32)
    if len(masks) == 0:
        return canvas
    areas = np.array([int(np.count_nonzero(m)) for m in masks])
    for rank, k in enumerate(np.argsort(-areas, kind="stable")):
        mask = np.asarray(masks[k], dtype=bool)
        if mask.shape != tuple(shape):
            raise SegmentsError(f"mask {k} has shape {mask.shape}, expected {tuple(shape)}")
        canvas[mask] = rank + 1
    return relabel_by_area(canvas)


# ------------------------------------------------------------------------------------ segmenters
def segment_none(rgb: np.ndarray, instances: np.ndarray | None = None) -> np.ndarray:
    """All zeros: no segments (the ablation baseline)."""
    return np.zeros(rgb.shape[:2], dtype=np.int32)


def segment_gt(rgb: np.ndarray, instances: np.ndarray | None) -> np.ndarray:
    """The ground-truth objects (``instances``, 0 = unlabelled) renumbered by area."""
    if instances is None:
        raise SegmentsError("segments.method 'gt' needs the dataset's 'instances' array")
    return relabel_by_area(instances)


def felzenszwalb_segmenter(cfg) -> Segmenter:
    """scikit-image's graph-based superpixels; every pixel is in one segment (coverage 1)."""

    def segment(rgb: np.ndarray, instances: np.ndarray | None = None) -> np.ndarray:
        regions = felzenszwalb(rgb, scale=cfg.scale, sigma=cfg.sigma, min_size=cfg.min_size)
        return relabel_by_area(regions.astype(np.int64) + 1)

    return segment


def remove_small_regions(mask: np.ndarray, min_area: int, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode='holes'``) or drop islands (``'islands'``) smaller than ``min_area`` pixels.

    mask: H x W bool; components are 8-connected. Dropping islands keeps the largest one if all are
    small. Returns the new mask and whether it changed (SAM's post-processing, without OpenCV).
    """
    holes = mode == "holes"
    working = ~mask if holes else mask
    regions, n = ndimage.label(working, structure=CONNECTIVITY_8)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    small = np.flatnonzero(sizes < min_area) + 1
    if small.size == 0:
        return mask, False
    if holes:
        return mask | np.isin(regions, small), True
    keep = np.setdiff1d(np.arange(1, n + 1), small)
    if keep.size == 0:
        keep = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(regions, keep), True


class SamSegmenter:
    """SAM's automatic mask generator -> label map. The model runs on whatever device it is on.

    ``min_mask_region_area`` post-processing (fill small holes, drop small islands, then box NMS
    preferring unchanged masks) is done here with SciPy, so OpenCV is not needed.
    """

    def __init__(self, model: torch.nn.Module, cfg, *, points_per_batch: int = 64):
        """cfg: the sam section (generator knobs); points_per_batch: prompts per forward pass (memory
        only, not the result)."""
        from segment_anything import SamAutomaticMaskGenerator

        self.generator = SamAutomaticMaskGenerator(
            model,
            points_per_side=cfg.points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=cfg.pred_iou_thresh,
            stability_score_thresh=cfg.stability_score_thresh,
            min_mask_region_area=0,
            output_mode="binary_mask",
        )
        self.min_area = cfg.min_mask_region_area
        self.nms_thresh = max(self.generator.box_nms_thresh, self.generator.crop_nms_thresh)

    def masks(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Binary masks (each H x W bool) SAM finds in ``rgb`` (H x W x 3 uint8); may be empty."""
        masks = [record["segmentation"] for record in self.generator.generate(np.ascontiguousarray(rgb))]
        if self.min_area > 0 and masks:
            masks = self._postprocess(masks)
        return [m for m in masks if m.any()]

    def _postprocess(self, masks: list[np.ndarray]) -> list[np.ndarray]:
        from segment_anything.utils.amg import batched_mask_to_box
        from torchvision.ops import batched_nms

        cleaned, scores = [], []
        for mask in masks:
            mask, changed_holes = remove_small_regions(mask, self.min_area, "holes")
            mask, changed_islands = remove_small_regions(mask, self.min_area, "islands")
            cleaned.append(mask)
            scores.append(0.0 if changed_holes or changed_islands else 1.0)
        boxes = batched_mask_to_box(torch.as_tensor(np.stack(cleaned)))
        keep = batched_nms(
            boxes.float(), torch.tensor(scores), torch.zeros(len(cleaned), dtype=torch.int64), self.nms_thresh
        )
        return [cleaned[i] for i in sorted(keep.tolist())]

    def __call__(self, rgb: np.ndarray, instances: np.ndarray | None = None) -> np.ndarray:
        return assemble_labels(self.masks(rgb), rgb.shape[:2])


def build_segmenter(
    cfg, sam_cfg, *, weights_dir: Path | str, points_per_batch: int = 64, device: torch.device | None = None
) -> Segmenter:
    """The segmenter ``cfg.method`` names (cfg: the segments section; SAM is built from the ``fetch_sam``
    folder ``weights_dir`` and moved to ``device``)."""
    if cfg.method == "none":
        return segment_none
    if cfg.method == "gt":
        return segment_gt
    if cfg.method == "felzenszwalb":
        return felzenszwalb_segmenter(cfg.felzenszwalb)
    if cfg.method == "sam":
        from depthcore.weights.sam import load_sam  # imported here: SAM (segment_anything) is heavy

        model = load_sam(weights_dir).to(device or default_device())
        return SamSegmenter(model, sam_cfg, points_per_batch=points_per_batch)
    raise SegmentsError(f"unknown segments.method {cfg.method!r}; valid methods are {list(SEGMENT_METHODS)}")


def segmenter_settings(cfg, sam_cfg, *, weights_dir: Path | str) -> dict[str, Any]:
    """JSON record of everything that determines the label maps (stored in the attrs)."""
    settings: dict[str, Any] = {"method": cfg.method}
    if cfg.method == "felzenszwalb":
        settings["felzenszwalb"] = cfg.felzenszwalb.to_dict()
    if cfg.method == "sam":
        settings["sam"] = sam_cfg.to_dict()
        settings["sam_weights"] = read_manifest(weights_dir, stage="fetch_sam")
    return settings


# ----------------------------------------------------------------------------------- stage loop
def write_segments(
    cfg,
    sam_cfg,
    dataset: Path | str,
    out: Path | str,
    *,
    weights_dir: Path | str,
    key: str | None,
    points_per_batch: int = 64,
    device: torch.device | None = None,
    progress: bool = True,
) -> Path:
    """Segment every image of ``dataset`` into ``out`` (segments.zarr). Resumable (same ``key``) and atomic.

    Writes ``labels`` (N x H x W int32, the convention of this module) and attrs: the segmenter settings
    (method, its knobs; for SAM the weights manifest), ``version``. Raises SegmentsError for ``gt`` on a
    dataset without ``instances``.
    """
    data = Store(dataset, required=("rgb",))
    if cfg.method == "gt" and "instances" not in data:
        raise SegmentsError(
            f"segments.method 'gt' needs ground-truth object ids, but {dataset} has no 'instances' array; "
            f"use segments.method sam, felzenszwalb or none"
        )
    n, h, w = data.shape("rgb")[:3]
    settings = segmenter_settings(cfg, sam_cfg, weights_dir=weights_dir)
    store = ResumableStore(out, key=key)
    labels = store.array("labels", (n, h, w), np.int32)
    if store.done < n:
        segment = build_segmenter(
            cfg, sam_cfg, weights_dir=weights_dir, points_per_batch=points_per_batch, device=device
        )
        bar = tqdm(
            range(store.done, n), desc=f"segments ({cfg.method})", total=n, initial=store.done, disable=not progress
        )
        for i in bar:
            instances = data.read("instances", i) if cfg.method == "gt" else None
            labels[i] = segment(data.read("rgb", i), instances)
            store.mark_done(i + 1)
    return store.commit({**settings, "version": SEGMENTS_VERSION})
