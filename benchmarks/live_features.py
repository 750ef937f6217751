"""Benchmark training's input with live features against cached ones, in one run on the offline synthetic rooms:
images/s of the loader alone and of loader + frozen backbone (``features: live``: a random 416 x 544 crop, the
backbone forwarded on the view each sample uses, no gradients; float16 autocast on CUDA), against the loader
reading the same layers from ``backbone.zarr`` (``features: cached``), plus what writing that store cost.

The backbone has seeded random weights (``pretrained: none``: same arithmetic as the released weights) and caches
the params.yaml layers of the selected zoo backbone; the samples are those of an adapter reading rgb, depth and
every cached layer, with ``train.flip: random``, batch 4, ``--workers`` DataLoader workers, on the device torch
picks (CPU here). Prints and writes benchmarks/results/live_features.json.

    python benchmarks/live_features.py                            # dinov2_vits14, 8 images: ~1 min on 2 CPU cores
    python benchmarks/live_features.py --backbone clip_vitb16 --images 16 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import DataLoader

from depthcore.config.params import load_params
from depthcore.data.batch import CLIP_PREFIX, loader_keys
from depthcore.data.prepare import fetch_data, prepare_dataset
from depthcore.data.samples import TrainingDataset
from depthcore.device import default_device
from depthcore.features.backbone import extract_features
from depthcore.features.live import LiveFeatures
from depthcore.models.backbones.zoo.registry import BACKBONES
from depthcore.models.predict import to_device

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "live_features.json"
BATCH_SIZE = 4


def build_dataset(tmp: Path, images: int) -> Path:
    """dataset.zarr of ``images`` rendered rooms (one view per room)."""
    data = load_params(
        REPO / "params.yaml",
        {"data.source": "synthetic", "data.synthetic.images": images, "data.synthetic.views_per_room": 1},
    ).data
    fetch_data(data, tmp / "raw", key=None, progress=False)
    return prepare_dataset("synthetic", tmp / "raw", tmp / "dataset.zarr", key=None, progress=False)


def rate(loader: DataLoader, step=None) -> float:
    """Images/s of one pass over ``loader``, ``step(batch)`` run on each batch."""
    count, start = 0, time.perf_counter()
    for batch in loader:
        if step is not None:
            step(batch)
        count += len(batch["index"])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="dinov2_vits14", help="a zoo backbone other than clip_rn50")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    layers = tuple(getattr(params.backbones, args.backbone).layers)
    backbone = BACKBONES.get(args.backbone).build(
        cfg=SimpleNamespace(init_seed=0, pretrained="none", layers=layers), state_dict=None
    )
    device = default_device(None)
    weights = {"backbone": args.backbone, "pretrained": "none", "init_seed": 0}
    keys = ("rgb", "depth") + tuple(CLIP_PREFIX + name for name in layers)
    indices = np.arange(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = build_dataset(Path(tmp), args.images)
        start = time.perf_counter()
        features = extract_features(
            dataset, Path(tmp) / "backbone.zarr", backbone=backbone, weights=weights, layers=layers, key=None,
            device=device, progress=False,
        )  # fmt: skip
        cache_s = time.perf_counter() - start
        stores = {"dataset": dataset, "features": features}
        store_bytes = sum(f.stat().st_size for f in Path(features).rglob("*") if f.is_file())

        def loader(data: TrainingDataset) -> DataLoader:
            return DataLoader(data, batch_size=BATCH_SIZE, num_workers=args.workers, pin_memory=device.type == "cuda")

        cached = TrainingDataset(stores=stores, indices=indices, keys=keys, flip="random", seed=0)
        live_set = TrainingDataset(
            stores=stores, indices=indices, keys=loader_keys(keys, live=True), flip="random", seed=0, random_crop=True
        )
        live = LiveFeatures(backbone, keys)

        def forward(batch):
            out = live(to_device(batch, device))
            if device.type == "cuda":
                torch.cuda.synchronize()
            return out

        rate(loader(cached))  # warm-up: page cache, store handles
        forward(next(iter(loader(live_set))))
        result = {
            "cached_loader_images_per_s": rate(loader(cached)),
            "live_loader_images_per_s": rate(loader(live_set)),
            "live_loader_and_backbone_images_per_s": rate(loader(live_set), forward),
        }
    result = {
        "backbone": args.backbone,
        "weights": "seeded random (pretrained: none)",
        "layers": list(layers),
        "images": args.images,
        "batch_size": BATCH_SIZE,
        "workers": args.workers,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cache_features_s_per_image": cache_s / args.images,
        "store_bytes_per_image": store_bytes / args.images,
        **result,
    }
    result["live_over_cached"] = result["live_loader_and_backbone_images_per_s"] / result["cached_loader_images_per_s"]
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
