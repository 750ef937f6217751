"""Benchmark of training: images/s per adapter (and per setting), and the DataLoader vs the model step.

Builds a small offline pipeline (rendered rooms, random-weight CLIP RN50, zero-shot depth, felzenszwalb
segments) in a temporary folder with depthcore.pipeline.build_inputs, then for each setting (params
overrides over params.yaml, see SETTINGS) builds the run exactly as the train stage does
(depthcore.training.run.build_run) and measures:

- model: training images/s of forward + loss + backward + optimizer step on batches already in memory
  (after one warm-up step) on the available device (CUDA when present, else CPU);
- loader: images/s of the run's DataLoader over the zarr stores (--workers worker processes);
- ratio = loader images/s / model images/s (> 1: the loader is not the bottleneck);

and two ratios of model images/s: the published MSA computing CLIP's stem and layer1 from the image
(the default, ``shallow: compute``) over reading them from the cache (``shallow: cache``), and
self-supervised (``loss: ssl``, real second views) over supervised L1 training of the same adapter.

Usage: python benchmarks/train.py [--images 12] [--batch-size 2] [--steps 3] [--workers 0] [--only msa ...]
Writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from depthcore.config.offline import OFFLINE as OFFLINE_SWITCHES
from depthcore.config.params import load_params
from depthcore.config.paths import Paths
from depthcore.device import default_device
from depthcore.models.predict import to_device, upsample_to
from depthcore.pipeline.build import build_inputs
from depthcore.training.run import build_phase_model, build_run

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "train.json"
OFFLINE = OFFLINE_SWITCHES | {
    "data.synthetic.views_per_room": 2,
    "clip.cache_layers": ["stem", "layer1", "layer2", "layer3", "layer4"],  # so that shallow: cache can run
}
NARROW = {"adapters.msa.widths": [64, 64, 32, 32, 16, 16]}
# name -> params overrides (each a run the train stage could do; the published settings unless said)
SETTINGS = {
    "clip_adapter": {"adapter": "clip_adapter"},
    "coarse_refine": {"adapter": "coarse_refine"},
    "eigen": {"adapter": "eigen"},
    "msa": {"adapter": "msa"},
    "msa_shallow_cached": {"adapter": "msa", "adapters.msa.shallow": "cache"},
    "msa_narrow": {"adapter": "msa"} | NARROW,
    "msa_narrow_shallow_cached": {"adapter": "msa", "adapters.msa.shallow": "cache"} | NARROW,
    "msa_narrow_ssl": {"adapter": "msa", "loss": "ssl"} | NARROW,
}
RATIOS = {  # name -> (numerator, denominator) of model images/s
    "published_msa_compute_over_cache": ("msa", "msa_shallow_cached"),
    "narrow_msa_compute_over_cache": ("msa_narrow", "msa_narrow_shallow_cached"),
    "narrow_msa_ssl_over_l1": ("msa_narrow_ssl", "msa_narrow"),
}


def seconds_per_call(fn, *, steps: int, device: torch.device) -> float:
    """Mean wall seconds of ``fn()`` over ``steps`` calls, waiting for the GPU's queue on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def measure(params, paths: Paths, *, steps: int, workers: int, device: torch.device) -> dict:
    run = build_run(params, paths)
    model = build_phase_model(params, run, 0, params.adapter_config.phases()[-1]).to(device)  # the whole model
    loss_fn = run.loss
    loader = torch.utils.data.DataLoader(
        run.train_set, batch_size=params.train.batch_size, shuffle=True, num_workers=workers
    )
    t0 = time.perf_counter()
    batches = list(loader)
    loader_ips = sum(len(b["index"]) for b in batches) / (time.perf_counter() - t0)

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = to_device(batches[0], device)

    def step():
        loss = loss_fn(upsample_to(model(batch), run.train_set.image_size), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    model_ips = len(batch["index"]) / seconds_per_call(step, steps=steps, device=device)
    return {
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "batch_keys": sorted(batch),
        "model_images_per_s": model_ips,
        "loader_images_per_s": loader_ips,
        "loader_to_model_ratio": loader_ips / model_ips,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12, help="synthetic images (2 per room; 3 rooms in 4 train)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per setting")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--only", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()

    base = OFFLINE | {
        "data.synthetic.images": args.images,
        "train.preset": "custom",
        "train.batch_size": args.batch_size,
    }
    device = default_device()
    results = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "images": args.images,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "settings": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = Paths().under(tmp)
        t0 = time.perf_counter()
        build_inputs(load_params(REPO / "params.yaml", base), paths)
        results["build_inputs_s"] = time.perf_counter() - t0
        for name in args.only:
            params = load_params(REPO / "params.yaml", base | SETTINGS[name])
            m = measure(params, paths, steps=args.steps, workers=args.workers, device=device)
            results["settings"][name] = m | {"overrides": SETTINGS[name]}
            print(
                f"{name:24s} {m['parameters']:>11,d} params  train {m['model_images_per_s']:7.2f} img/s  "
                f"loader {m['loader_images_per_s']:7.2f} img/s  loader/model {m['loader_to_model_ratio']:6.1f}"
            )
    done = results["settings"]
    results["ratios"] = {
        name: done[a]["model_images_per_s"] / done[b]["model_images_per_s"]
        for name, (a, b) in RATIOS.items()
        if a in done and b in done
    }
    print(json.dumps(results["ratios"], indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
