"""DINOv2's released depth heads on a dataset store's test split, scored by depthcore's metrics
(:func:`depthcore.evaluation.metrics.evaluate`: Eigen crop, 0.001-10 m, per-image metrics averaged), written as one
JSON record (atomic) with the files' hashes beside the figures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from depthcore.bridge.dinov2_heads import DinoV2Depther, file_facts, load_backbone, load_head
from depthcore.bridge.releases import (
    BTS_DEPTH_SCALE,
    BTS_KEPT,
    MAX_DEPTH,
    MIN_DEPTH,
    NYU_FRAME,
    PUBLISHED_LIN4_RMSE,
    head_blocks,
)
from depthcore.data.splits import split_indices
from depthcore.data.store import Store
from depthcore.evaluation.metrics import evaluate
from depthcore.io import write_json_atomic

PUBLISHED_SOURCE = "facebookresearch/dinov2 @ b8931f7 MODEL_CARD.md: NYU-Depth v2 depth (RMSE), linear 4 layers"
PROTOCOL = (
    "official test split of the store, full frame, ImageNet normalisation, centre zero-padding to multiples of 14, "
    "flip TTA, depth clamped to [0.001, 10] m and resized to the frame, ground truth depth_eval (rawDepths for "
    "NYUv2), Eigen crop, 0.001 < gt < 10 m"
)


def as_bts_files(rgb: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """B x 480 x 640 x 3 uint8 images and B x 480 x 640 metres as BTS's test files hold them (releases.BTS_KEPT,
    BTS_DEPTH_SCALE): black outside the kept rectangle, depth truncated to whole millimetres (JPEG compression of
    the images is not reproduced)."""
    top, bottom, left, right = BTS_KEPT
    black = np.zeros_like(rgb)
    black[:, top:bottom, left:right] = rgb[:, top:bottom, left:right]
    return black, np.floor(depth * BTS_DEPTH_SCALE) / BTS_DEPTH_SCALE


def predictions(
    depther: DinoV2Depther, store: Store, indices: np.ndarray, *, batch_size: int, bts: bool, progress: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ground truth, prediction) per image of ``indices``, H x W metres each (``bts``: as BTS's files)."""
    device = next(depther.parameters()).device
    for start in tqdm(range(0, len(indices), batch_size), desc="bridge", unit="batch", disable=not progress):
        chunk = indices[start : start + batch_size]
        rgb, depth = store.read("rgb", chunk), store.read("depth_eval", chunk)
        if bts:
            rgb, depth = as_bts_files(rgb, depth)
        pred = depther(torch.from_numpy(rgb).to(device).permute(0, 3, 1, 2).float() / 255.0)
        yield from zip(depth, pred[:, 0].float().cpu().numpy(), strict=True)


def evaluate_dinov2_head(
    *,
    backbone: str,
    head: str,
    head_file: Path | str,
    backbone_file: Path | str | None,
    dataset: Path | str,
    out: Path | str,
    device: torch.device | str = "cpu",
    batch_size: int = 1,
    limit: int | None = None,
    init_seed: int = 0,
    bts: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate DINOv2's released ``head`` on ``backbone`` (weights ``backbone_file``; None: seeded random) over the
    test split of the store ``dataset`` (its first ``limit`` images when given); write and return the record.
    ``bts``: on a 480 x 640 store, read the images and ground truth as DINOv2's test files hold them
    (:func:`as_bts_files`); other frames are read as they are."""
    store = Store(dataset, required=("rgb", "depth_eval", "split"))
    size = tuple(store.shape("rgb")[1:3])
    bts = bts and size == NYU_FRAME
    vit = load_backbone(backbone, backbone_file, init_seed=init_seed)
    depther = DinoV2Depther(backbone, head, vit, load_head(backbone, head, head_file, size)).to(device).eval()
    indices = split_indices(store.read("split"), "test")
    indices = indices[:limit] if limit is not None else indices
    cfg = SimpleNamespace(min_depth=MIN_DEPTH, max_depth=MAX_DEPTH, median_scaling=False)
    pairs = predictions(depther, store, indices, batch_size=batch_size, bts=bts, progress=progress)
    metrics, _ = evaluate(pairs, cfg=cfg)
    published = PUBLISHED_LIN4_RMSE.get(backbone) if head == "linear4" else None
    record = {
        "backbone": backbone,
        "head": head,
        "blocks": [b + 1 for b in head_blocks(backbone, head)],
        "head_file": file_facts(head_file),
        "backbone_weights": file_facts(backbone_file)
        if backbone_file
        else {"pretrained": "none", "init_seed": init_seed},
        "dataset": {"path": str(dataset), "source": store.attrs.get("source"), "frame": list(size)},
        "test_images": int(len(indices)),
        "limit": limit,
        "protocol": PROTOCOL,
        "bts_test_files": bts,
        "metrics": metrics,
        "published_rmse": None if published is None else {"rmse": published, "source": PUBLISHED_SOURCE},
        "device": str(torch.device(device)),
    }
    write_json_atomic(out, record)
    return record
