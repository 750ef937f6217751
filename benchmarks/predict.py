"""Benchmark of ``depthcore predict``: images/s of live prediction for DepthCLIP zero-shot and the published MSA.

Builds a small offline pipeline (rendered rooms, random-weight CLIP RN50, felzenszwalb segments) in a temporary
folder with depthcore.pipeline.build_inputs, writes a checkpoint of the published MSA (``adapter: msa`` with the
repository's params, untrained: its cost does not depend on its weights) and of the published MSA + segments
(``adapters.msa.segments: color``, segmented live by felzenszwalb, the offline segmenter; SAM costs far more),
renders new rooms as 640 x 480 PNG files, and times :func:`depthcore.inference.predict.predict_images` over them
(everything ``depthcore predict`` does: reading, the size policy, CLIP on the image and its mirror image, the
model, writing .npy / 16-bit PNG / colourised PNG), after one warm-up image, on the available device.

Usage: python benchmarks/predict.py [--images 8] [--batch-size 4]
       python benchmarks/predict.py --write-rooms DIR [--images 2] [--size 768x1024]   (only write rendered rooms)
Writes benchmarks/results/predict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from depthcore.config.offline import OFFLINE
from depthcore.config.params import load_params
from depthcore.config.paths import Paths
from depthcore.data.synthetic import render_sample
from depthcore.device import default_device
from depthcore.inference.live import LivePredictor
from depthcore.inference.predict import OutputOptions, predict_images
from depthcore.pipeline.build import build_inputs
from depthcore.training.checkpoint import save_checkpoint
from depthcore.training.run import build_phase_model, build_run

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "predict.json"
ROOMS_SEED = 2026  # rooms no offline dataset renders (those use data.synthetic.seed)
MODELS = {"msa": {}, "msa_segments": {"adapters.msa.segments": "color"}}  # name -> params overrides


def write_rooms(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """``n`` rendered rooms (height x width ``size``) as PNG files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        sample = render_sample(ROOMS_SEED, i, views_per_room=1, height=size[0], width=size[1])
        Image.fromarray(sample.rgb).save(folder / f"room{i}.png")
        files.append(folder / f"room{i}.png")
    return files


def checkpoint(params, paths: Paths, out: Path) -> Path:
    """An untrained checkpoint of the run ``params`` describes, with the metadata training writes."""
    run = build_run(params, paths)
    model = build_phase_model(params, run, 0, params.adapter_config.phases()[-1])
    return save_checkpoint(out, state_dict=model.state_dict(), meta=run.meta)


def images_per_second(predictor: LivePredictor, files: list[Path], out: Path, batch_size: int) -> dict:
    predict_images(predictor, files[:1], out / "warmup", batch_size=1, progress=False)
    start = time.perf_counter()
    summary = predict_images(
        predictor, files, out / "timed", options=OutputOptions(), batch_size=batch_size, progress=False
    )
    seconds = time.perf_counter() - start
    assert len(summary.written) == len(files)
    return {"images": len(files), "seconds": round(seconds, 2), "images_per_s": round(len(files) / seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--write-rooms", type=Path, help="only write rendered rooms as PNG files into this folder")
    parser.add_argument("--size", default="480x640", help="height x width of the rendered rooms")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.write_rooms:
        print("\n".join(map(str, write_rooms(args.write_rooms, args.images, size))))
        return
    device = default_device()
    results: dict = {"device": str(device), "torch_threads": torch.get_num_threads(), "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        overrides = OFFLINE | {"data.synthetic.images": 6, "data.synthetic.views_per_room": 2}
        paths = build_inputs(load_params(REPO / "params.yaml", overrides=overrides), Paths().under(tmp / "pipeline"))
        files = write_rooms(tmp / "rooms", args.images, size)
        live = {"backbone_weights": paths.backbone_weights, "head": paths.clip_head, "device": device}
        results["zeroshot"] = images_per_second(LivePredictor.zeroshot(**live), files, tmp / "zs", args.batch_size)
        print("zeroshot", results["zeroshot"])
        for name, extra in MODELS.items():
            params = load_params(REPO / "params.yaml", overrides=overrides | extra)
            model = checkpoint(params, paths, tmp / f"{name}.safetensors")
            predictor = LivePredictor.from_checkpoint(model, sam_weights=paths.sam_weights, **live)
            n_params = sum(p.numel() for p in predictor.model.parameters())
            results[name] = images_per_second(predictor, files, tmp / name, args.batch_size) | {"parameters": n_params}
            print(name, results[name])
    results["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
