"""Benchmark the training loader over NYU-sized stores: images/s per worker count, and bytes decompressed per
sample, today's against the earlier loader, in one run: backbone.zarr chunked one chunk per image and view, and each
store's arrays opened once per process (today), against one chunk per image holding both views and every read
opening its array's metadata again, the arrays of a sample read one after another (the earlier layout and
reader, rebuilt here from the same arrays); today a sample's arrays are read concurrently.

The stores are NYU-sized per image (480 x 640 frames; the default ``clip.cache_layers`` layer2..4 of RN50 at the
416 x 544 crop, both views, float16, byte-shuffled zstd + crc32c), rendered rooms through a seeded random RN50
(about half the values are exact zeros after the ReLUs, as with pretrained weights; the magnitudes differ, so
decompression times are indicative). The samples are those of the published MSA (rgb, depth, clip_layer2..4)
with ``train.flip: random`` (one view per sample) and ``average`` (both views: two forward passes per sample),
batch 8, as the train stage's DataLoader (persistent workers) loads them.

Prints and writes benchmarks/results/loader.json: per layout and flip mode, images/s at each worker count, the
per-process rate, the bytes decompressed per sample; the ratio of the per-process rates (today / earlier); and
the worker count that feeds ``--target`` images/s, from the measured rate of one worker (which includes handing
its batches to the main process; workers scale until the cores run out, and this machine has too few to show it).

    python benchmarks/loader.py                  # ~3 min on 2 CPU cores (16 images)
    python benchmarks/loader.py --images 32 --workers 0 1 2 4 --target 120
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import zarr
from zarr.codecs import Crc32cCodec

from depthcore.config.params import load_params
from depthcore.data.batch import store_of
from depthcore.data.prepare import fetch_data, prepare_dataset
from depthcore.data.samples import TrainingDataset, stored_array
from depthcore.data.store import Store
from depthcore.features.backbone import FEATURE_COMPRESSOR, extract_features
from depthcore.models.backbones.clip import build_clip_backbone
from depthcore.training.loop import train_loader

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "loader.json"
KEYS = ("rgb", "depth", "clip_layer2", "clip_layer3", "clip_layer4")  # the published MSA with an L1 loss
LAYERS = ("layer2", "layer3", "layer4")


def build_stores(tmp: Path, images: int) -> tuple[Path, Path, Path]:
    """dataset.zarr, backbone.zarr (today's layout) and clip_both_views.zarr (the same arrays, one chunk per image)."""
    data = load_params(
        REPO / "params.yaml",
        {"data.source": "synthetic", "data.synthetic.images": images, "data.synthetic.views_per_room": 1},
    ).data
    fetch_data(data, tmp / "raw", key=None, progress=False)
    dataset = prepare_dataset("synthetic", tmp / "raw", tmp / "dataset.zarr", key=None, progress=False)
    backbone = build_clip_backbone(model="RN50-quickgelu")
    weights = {"model": "RN50-quickgelu", "pretrained": "none", "init_seed": 0}
    features = extract_features(
        dataset, tmp / "backbone.zarr", backbone=backbone, weights=weights, layers=LAYERS, key=None, progress=False
    )
    source = zarr.open_group(str(features), mode="r")
    earlier = zarr.open_group(str(tmp / "clip_both_views.zarr"), mode="w")
    earlier.attrs.update(dict(source.attrs))
    for name in LAYERS:
        array = source[name]
        copy = earlier.create_array(
            name=name,
            shape=array.shape,
            chunks=(1, *array.shape[1:]),
            dtype=array.dtype,
            compressors=[FEATURE_COMPRESSOR, Crc32cCodec()],
            fill_value=0,
        )
        copy[...] = array[...]
    return dataset, features, tmp / "clip_both_views.zarr"


class EarlierStore(Store):
    """The earlier reader: every read opens the array again (reading and parsing its zarr.json)."""

    def _array(self, name: str) -> zarr.Array:
        return self.group[name]


class EarlierDataset(TrainingDataset):
    """The earlier sample: each array read in turn, a CLIP layer's chunk whole (both views in that layout)."""

    def _read(self, i: int, flipped: bool) -> dict:
        return {key: self.stores[store_of(key)].read(stored_array(key), i) for key in self.keys if key != "intrinsics"}


def decompressed_bytes(features: Path, views_used: int) -> int:
    """Bytes of feature chunks decompressed for one sample: every chunk the sample's views touch, whole."""
    group = zarr.open_group(str(features), mode="r")
    total = 0
    for name in LAYERS:
        array = group[name]
        chunk = math.prod(array.chunks) * array.dtype.itemsize
        per_chunk_views = array.chunks[1]
        total += chunk * math.ceil(views_used / per_chunk_views)
    return total


def images_per_s(data: TrainingDataset, workers: int, batch: int, epochs: int) -> float:
    """Images/s of the train stage's loader (persistent workers) over ``epochs`` epochs, after one warm-up."""
    job = SimpleNamespace(
        train_set=data, settings=SimpleNamespace(batch_size=batch), num_workers=workers, seed=0, phase_index=0
    )
    loader = train_loader(job, torch.device("cpu"))
    loader.sampler.epoch = 0
    for _ in loader:  # warm-up: workers start, stores open, page cache filled
        pass
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        loader.sampler.epoch = epoch
        for _ in loader:
            pass
    return epochs * len(data) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="rendered images (default 16)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts (default 0 1 2)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per measurement (default 3)")
    parser.add_argument("--target", type=float, default=120.0, help="images/s a GPU takes (default 120)")
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    results: dict = {
        "images": args.images,
        "batch_size": args.batch_size,
        "keys": list(KEYS),
        "cpu": platform.processor() or platform.machine(),
        "cpus": cpus,
        "layouts": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        dataset, features, earlier = build_stores(Path(tmp), args.images)
        for layout, path in (("today", features), ("earlier", earlier)):
            stores = {"dataset": dataset, "features": path}
            per_mode = {}
            for flip, views in (("random", 1), ("average", 2)):
                data = (EarlierDataset if layout == "earlier" else TrainingDataset)(
                    stores=stores,
                    indices=np.arange(args.images),
                    keys=KEYS,
                    flip="random" if flip == "random" else "none",
                    with_flipped=flip == "average",
                )
                if layout == "earlier":
                    data.stores = {name: EarlierStore(path) for name, path in stores.items()}
                rates = {str(w): images_per_s(data, w, args.batch_size, args.epochs) for w in args.workers}
                per_mode[flip] = {
                    "images_per_s_by_workers": rates,
                    "per_process_images_per_s": rates[str(args.workers[0])] if args.workers[0] == 0 else None,
                    "feature_bytes_decompressed_per_sample": decompressed_bytes(path, views),
                }
                shown = ", ".join(f"{w} workers {r:6.1f} img/s" for w, r in rates.items())
                print(f"{layout:8s} flip {flip:7s}: {shown}")
            results["layouts"][layout] = per_mode
    today = results["layouts"]["today"]["random"]
    before = results["layouts"]["earlier"]["random"]
    if today["per_process_images_per_s"] and before["per_process_images_per_s"]:
        rate = today["per_process_images_per_s"]
        results["per_process_ratio_today_over_earlier"] = rate / before["per_process_images_per_s"]
        results["bytes_ratio_today_over_earlier"] = (
            today["feature_bytes_decompressed_per_sample"] / before["feature_bytes_decompressed_per_sample"]
        )
        # one worker's rate includes handing its batches to the main process; more workers add it per core
        per_worker = today["images_per_s_by_workers"].get("1", rate)
        results["target_images_per_s"] = args.target
        results["images_per_s_per_worker"] = per_worker
        results["workers_to_feed_target"] = math.ceil(args.target / per_worker)
        print(
            f"per process: {rate:.1f} img/s today vs {before['per_process_images_per_s']:.1f} earlier "
            f"(x{results['per_process_ratio_today_over_earlier']:.2f}); one worker {per_worker:.1f} img/s: "
            f"{results['workers_to_feed_target']} workers (one core each) feed {args.target:.0f} img/s"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
