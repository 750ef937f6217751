"""Benchmark of training: images/s per adapter, and DataLoader throughput vs the model's step rate.

Builds a small synthetic source (rendered rooms, random-weight CLIP RN50 features for the layers in
--layers, zero-shot depth and felzenszwalb-free "gt" segments) in a temporary directory, then for
every registered adapter (settings: the params.yaml defaults, msa on --layers):

- model: training images/s of forward + loss + backward + optimizer step on batches already in
  memory (after one warm-up step) on the available device (CUDA when present, else CPU);
- loader: images/s of a DataLoader over the zarr stores reading exactly that adapter's batch keys
  with random flips (--workers worker processes);
- ratio = loader images/s / model images/s (> 1: the loader is not the bottleneck).

Usage: python benchmarks/train.py [--images 8] [--batch-size 4] [--steps 3] [--workers 0]
Writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results" / "train.json"

from depthcore.config import AdaptersConfig, ClipConfig, DataConfig, DepthclipConfig  # noqa: E402
from depthcore.data.prepare import fetch_data, prepare_dataset  # noqa: E402
from depthcore.data.store import ResumableStore, open_store  # noqa: E402
from depthcore.data.training import TrainingDataset  # noqa: E402
from depthcore.device import default_device  # noqa: E402
from depthcore.features import extract_clip_features  # noqa: E402
from depthcore.losses import build_loss  # noqa: E402
from depthcore.models.adapters import ADAPTERS, AdapterContext, build_adapter  # noqa: E402
from depthcore.models.clip_backbone import build_clip_backbone  # noqa: E402
from depthcore.models.depthclip import build_depthclip_head  # noqa: E402
from depthcore.train import to_device, upsample_to  # noqa: E402
from depthcore.zeroshot import predict_zeroshot  # noqa: E402


def build_sources(root: Path, images: int, layers: list[str]):
    data_cfg = DataConfig.from_params(
        {"source": "synthetic", "val_fraction": 0.0, "synthetic": {"images": images, "views_per_room": 2}}
    )
    fetch_data(data_cfg, root / "raw", progress=False)
    dataset = prepare_dataset(data_cfg, root / "raw", root / "dataset.zarr", progress=False)
    clip_cfg = ClipConfig.from_params({"pretrained": "none", "cache_layers": layers})
    backbone = build_clip_backbone(cfg=clip_cfg, weights_dir=root)
    t0 = time.perf_counter()
    extract_clip_features(
        dataset, root / "clip.zarr", backbone=backbone, cfg=clip_cfg, weights_sha256=None, progress=False
    )
    feature_seconds = time.perf_counter() - t0
    head = build_depthclip_head(backbone=backbone, cfg=DepthclipConfig())
    predict_zeroshot(open_store(root / "clip.zarr"), root / "zeroshot.zarr", head=head, fingerprint={}, progress=False)
    data = open_store(dataset)  # segments: the dataset's instances (as segments.method: gt would)
    seg = ResumableStore(root / "segments.zarr", fingerprint={})
    labels = seg.array("labels", data["instances"].shape, np.int32)
    labels[:] = np.asarray(data["instances"][:])
    seg.commit({"method": "gt"})
    stores = {
        "dataset": dataset,
        "features": root / "clip.zarr",
        "segments": root / "segments.zarr",
        "zeroshot": root / "zeroshot.zarr",
    }
    return stores, head, feature_seconds


def measure(name, cfg, stores, head, *, batch_size, steps, workers, device):
    features = open_store(stores["features"])
    context = AdapterContext.from_features(features.attrs, head=head)
    torch.manual_seed(0)
    model = build_adapter(name, cfg=cfg, context=context).to(device)
    loss_fn = build_loss("l1")
    keys = model.batch_keys() + loss_fn.fields
    data = TrainingDataset(split="train", keys=keys, flip="random", **stores)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=workers)

    t0 = time.perf_counter()
    n_loaded, batches = 0, []
    for batch in loader:
        n_loaded += len(batch["index"])
        batches.append(batch)
    loader_ips = n_loaded / (time.perf_counter() - t0)

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = to_device(batches[0], device)

    def step():
        pred = upsample_to(model(batch), tuple(batch["depth"].shape[-2:]))
        loss = loss_fn(pred, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    model_ips = steps * len(batch["index"]) / (time.perf_counter() - t0)
    return {
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "batch_keys": list(keys),
        "model_images_per_s": model_ips,
        "loader_images_per_s": loader_ips,
        "loader_to_model_ratio": loader_ips / model_ips,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="synthetic images (3/4 of them train)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per adapter")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--layers", nargs="+", default=["layer2", "layer3", "layer4"], help="cached CLIP layers")
    parser.add_argument("--adapters", nargs="+", default=list(ADAPTERS))
    args = parser.parse_args()

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    adapters_params = params.get("adapters", {})
    adapters_params.setdefault("msa", {})["layers"] = args.layers
    cfg = AdaptersConfig.from_params(adapters_params, prefix="adapters")
    device = default_device()
    results = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "images": args.images,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "layers": args.layers,
        "adapters": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        stores, head, feature_seconds = build_sources(Path(tmp), args.images, args.layers)
        results["clip_features_images_per_s"] = args.images / feature_seconds
        for name in args.adapters:
            m = measure(
                name,
                cfg,
                stores,
                head,
                batch_size=args.batch_size,
                steps=args.steps,
                workers=args.workers,
                device=device,
            )
            results["adapters"][name] = m
            print(
                f"{name:14s} {m['parameters']:>10,d} params  train {m['model_images_per_s']:7.2f} img/s  "
                f"loader {m['loader_images_per_s']:7.2f} img/s  loader/model {m['loader_to_model_ratio']:6.1f}"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
