"""DepthCLIP zero-shot predictions from cached layer4 features (the zeroshot stage).

Reads ``clip.zarr`` ``layer4`` (N, 2, C, h, w) and the head artifact, never the backbone, and writes
``zeroshot.zarr`` ``depth`` (N, 480, 640) float32 metres (0 outside the DepthCLIP crop) for every image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from depthcore.data.store import ResumableStore, Store
from depthcore.geometry import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_WIDTH
from depthcore.models.depthclip import zeroshot_depth

BATCH_SIZE = 16


def predict_zeroshot(
    features: Path | str, out: Path | str, *, head: nn.Module, key: str | None, progress: bool = True
) -> Path:
    """Write ``out`` with the zero-shot depth of every image of ``features`` (clip.zarr); return ``out``."""
    layer4 = Store(features, required=("layer4",))
    n = layer4.shape("layer4")[0]
    store = ResumableStore(out, key=key)
    depth = store.array("depth", (n, NYU_HEIGHT, NYU_WIDTH), np.float32)
    with tqdm(total=n, initial=store.done, unit="img", desc="zeroshot", disable=not progress) as bar, torch.no_grad():
        for lo in range(store.done, n, BATCH_SIZE):
            hi = min(lo + BATCH_SIZE, n)
            depth[lo:hi] = zeroshot_depth(head, torch.from_numpy(layer4.read("layer4", slice(lo, hi))))[:, 0].numpy()
            store.mark_done(hi)
            bar.update(hi - lo)
    return store.commit({"depth_unit": "m", "crop": list(DEPTHCLIP_CROP), "n_images": n, "predictor": "depthclip"})


def run_zeroshot(paths, eval_cfg, *, key: str | None) -> dict:
    """The zeroshot stage: predictions for every image, test metrics and the figure."""
    from depthcore.evaluation import write_report
    from depthcore.models.depthclip import load_head

    out = predict_zeroshot(paths.clip_features, paths.zeroshot, head=load_head(paths.clip_head), key=key)
    depth = Store(out, required=("depth",))
    return write_report(
        depth,
        Store(paths.dataset, required=("rgb", "depth_eval", "split", "scene")),
        cfg=eval_cfg,
        metrics_path=paths.zeroshot_metrics,
        figure_path=paths.zeroshot_figure,
        figure_columns=[("DepthCLIP zero-shot", depth)],
    )
