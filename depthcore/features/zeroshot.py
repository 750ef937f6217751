"""DepthCLIP zero-shot predictions from cached layer4 features (the zeroshot stage; its metrics and figure
are the zeroshot_report stage's, :mod:`depthcore.evaluation.report`).

Reads ``backbone.zarr`` ``layer4`` (N, 2, C, h, w; a ViT CLIP's ``dense``, the layer the head artifact names) and
the head artifact, never the backbone, and writes ``zeroshot.zarr`` ``depth`` (N, 480, 640) float32 metres (0
outside the DepthCLIP crop) for every image. A backbone without a text tower has no zero-shot depth: the store
then holds no ``depth`` and its attrs say why (``predictor`` null); the adapters that read it are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from depthcore.artifacts import HEAD_LAYER, has_head, head_identity, head_layer, load_head
from depthcore.data.store import ResumableStore, Store
from depthcore.geometry.frame import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_WIDTH
from depthcore.models.heads.depthclip import zeroshot_depth


def predict_zeroshot(
    features: Path | str,
    out: Path | str,
    *,
    head: nn.Module,
    head_id: dict | None = None,
    layer: str = HEAD_LAYER,
    key: str | None,
    batch_size: int,
    progress: bool = True,
) -> Path:
    """Write ``out`` with the zero-shot depth of every image of ``features`` (backbone.zarr, its ``layer``),
    ``batch_size`` images at a time; return ``out``. ``head_id``: the head's identity
    (:func:`depthcore.artifacts.head_identity`), recorded in the attrs as ``head``."""
    cached = Store(features, required=(layer,))
    n = cached.shape(layer)[0]
    store = ResumableStore(out, key=key)
    depth = store.array("depth", (n, NYU_HEIGHT, NYU_WIDTH), np.float32)
    with tqdm(total=n, initial=store.done, unit="img", desc="zeroshot", disable=not progress) as bar, torch.no_grad():
        for lo in range(store.done, n, batch_size):
            hi = min(lo + batch_size, n)
            depth[lo:hi] = zeroshot_depth(head, torch.from_numpy(cached.read(layer, slice(lo, hi))))[:, 0].numpy()
            store.mark_done(hi)
            bar.update(hi - lo)
    attrs = {"depth_unit": "m", "crop": list(DEPTHCLIP_CROP), "n_images": n, "predictor": "depthclip"}
    return store.commit(attrs | {"head": head_id})


def write_no_zeroshot(features: Path | str, out: Path | str, *, head_id: dict) -> Path:
    """The zeroshot store of a backbone without a text tower: no ``depth``, attrs saying why."""
    store = ResumableStore(out, key=None, resume=False)
    backbone = Store(features).attrs.get("backbone")
    store.mark_done(0)
    reason = f"backbone {backbone!r} has no text tower: no DepthCLIP zero-shot depth"
    return store.commit({"predictor": None, "reason": reason, "n_images": 0, "head": head_id})


def run_zeroshot(paths, *, key: str | None, batch_size: int, progress: bool = True) -> Path:
    """The zeroshot stage: the head artifact over the cached layer it reads of every image, into
    ``zeroshot.zarr`` (a store without depth for a backbone without a text tower)."""
    if not has_head(paths.clip_head):
        return write_no_zeroshot(paths.features, paths.zeroshot, head_id=head_identity(paths.clip_head))
    return predict_zeroshot(
        paths.features,
        paths.zeroshot,
        head=load_head(paths.clip_head),
        head_id=head_identity(paths.clip_head),
        layer=head_layer(paths.clip_head),
        key=key,
        batch_size=batch_size,
        progress=progress,
    )
