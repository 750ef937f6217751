"""DepthCLIP zero-shot predictions from cached layer4 features (the zeroshot stage).

Reads ``clip.zarr`` ``layer4`` (N, 2, C, h, w), never the backbone, and writes ``zeroshot.zarr``
``depth`` (N, 480, 640) float32 metres (0 outside the DepthCLIP crop) for every image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from depthcore.data.store import ResumableStore
from depthcore.geometry import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_WIDTH
from depthcore.models.depthclip import zeroshot_depth

BATCH_SIZE = 16


def predict_zeroshot(
    features,
    out: Path | str,
    *,
    head: nn.Module,
    fingerprint: dict,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
) -> Path:
    """Write ``out`` with the zero-shot depth of every image; return ``out``.

    features: the open clip.zarr group (checked by the caller); head: a DepthCLIPHead (CPU, float32);
    fingerprint: what the predictions depend on (features and head settings), for resuming.
    """
    layer4 = features["layer4"]
    n = int(layer4.shape[0])
    store = ResumableStore(out, fingerprint={**fingerprint, "n": n, "batch_size": batch_size})
    depth = store.array("depth", (n, NYU_HEIGHT, NYU_WIDTH), np.float32)
    start = store.done - store.done % batch_size
    with tqdm(total=n, initial=start, unit="img", desc="zeroshot", disable=not progress) as bar, torch.no_grad():
        for lo in range(start, n, batch_size):
            hi = min(lo + batch_size, n)
            pred = zeroshot_depth(head, torch.from_numpy(np.asarray(layer4[lo:hi])))
            depth[lo:hi] = pred[:, 0].numpy()
            store.mark_done(hi)
            bar.update(hi - lo)
    return store.commit({"depth_unit": "m", "crop": list(DEPTHCLIP_CROP), "n_images": n, "predictor": "depthclip"})
