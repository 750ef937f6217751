"""DepthCLIP zero-shot predictions from cached layer4 features (the zeroshot stage; its metrics and figure
are the zeroshot_report stage's, :mod:`depthcore.evaluation.report`).

Reads ``clip.zarr`` ``layer4`` (N, 2, C, h, w) and the head artifact, never the backbone, and writes
``zeroshot.zarr`` ``depth`` (N, 480, 640) float32 metres (0 outside the DepthCLIP crop) for every image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from depthcore.artifacts import head_identity, load_head
from depthcore.data.store import ResumableStore, Store
from depthcore.geometry.frame import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_WIDTH
from depthcore.models.heads.depthclip import zeroshot_depth


def predict_zeroshot(
    features: Path | str,
    out: Path | str,
    *,
    head: nn.Module,
    head_id: dict | None = None,
    key: str | None,
    batch_size: int,
    progress: bool = True,
) -> Path:
    """Write ``out`` with the zero-shot depth of every image of ``features`` (clip.zarr), ``batch_size``
    images at a time; return ``out``. ``head_id``: the head's identity (:func:`depthcore.artifacts.head_identity`),
    recorded in the attrs as ``head``."""
    layer4 = Store(features, required=("layer4",))
    n = layer4.shape("layer4")[0]
    store = ResumableStore(out, key=key)
    depth = store.array("depth", (n, NYU_HEIGHT, NYU_WIDTH), np.float32)
    with tqdm(total=n, initial=store.done, unit="img", desc="zeroshot", disable=not progress) as bar, torch.no_grad():
        for lo in range(store.done, n, batch_size):
            hi = min(lo + batch_size, n)
            depth[lo:hi] = zeroshot_depth(head, torch.from_numpy(layer4.read("layer4", slice(lo, hi))))[:, 0].numpy()
            store.mark_done(hi)
            bar.update(hi - lo)
    attrs = {"depth_unit": "m", "crop": list(DEPTHCLIP_CROP), "n_images": n, "predictor": "depthclip"}
    return store.commit(attrs | {"head": head_id})


def run_zeroshot(paths, *, key: str | None, batch_size: int, progress: bool = True) -> Path:
    """The zeroshot stage: the head artifact over the cached layer4 of every image, into ``zeroshot.zarr``."""
    return predict_zeroshot(
        paths.clip_features,
        paths.zeroshot,
        head=load_head(paths.clip_head),
        head_id=head_identity(paths.clip_head),
        key=key,
        batch_size=batch_size,
        progress=progress,
    )
