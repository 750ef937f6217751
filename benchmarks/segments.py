"""Seconds per image of each segmenter, extrapolated to the 1449 NYUv2 images.

Renders a few synthetic 480 x 640 rooms (same size as NYUv2), times ``none``, ``gt`` and
``felzenszwalb`` on every one of them and SAM (seeded random weights, ``--model``) with each
``--points-per-side`` on the first ``--sam-images``. SAM's time is split into the image encoder
(``set_image``, always 1024 x 1024, independent of points_per_side) and the rest (prompt decoding,
filtering, NMS, label assembly). Runs on the GPU when there is one. Random weights pass hardly any
mask through SAM's default quality filters, so the post-processing part is a lower bound of what
the official weights cost.

    python benchmarks/segments.py                                # points_per_side 8 16: ~2 min on 2 CPU cores
    python benchmarks/segments.py --points-per-side 8 16 32      # + 32: ~7 min on 2 CPU cores
    python benchmarks/segments.py --images 8 --sam-images 3

Prints a table and writes benchmarks/results/segments.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from depthcore.config.params import load_params
from depthcore.data.prepare import fetch_data, prepare_dataset
from depthcore.data.store import Store
from depthcore.device import default_device
from depthcore.features.segments import SamSegmenter, build_segmenter
from depthcore.io import write_json_atomic
from depthcore.models.backbones.sam import build_sam

REPO = Path(__file__).resolve().parents[1]


def params(**overrides):
    return load_params(REPO / "params.yaml", {"adapters.msa.segments": "none", "sam.pretrained": "none"} | overrides)


NYUV2_IMAGES = 1449
RESULTS = Path(__file__).parent / "results" / "segments.json"


def _render(images: int, root: Path):
    cfg = params(
        **{"data.source": "synthetic", "data.synthetic.images": max(images, 3), "data.synthetic.views_per_room": 1}
    )
    fetch_data(cfg.data, root / "raw", key=None, progress=False)
    data = Store(prepare_dataset("synthetic", root / "raw", root / "dataset.zarr", key=None, progress=False)).group
    return data["rgb"][:], data["instances"][:]


def _entry(seconds: list[float], **extra) -> dict:
    per_image = float(np.mean(seconds))
    return {
        "images_timed": len(seconds),
        "seconds_per_image": per_image,
        "nyuv2_hours": per_image * NYUV2_IMAGES / 3600,
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4, help="synthetic images for none / gt / felzenszwalb")
    parser.add_argument("--sam-images", type=int, default=1, help="of those, how many SAM segments per setting")
    parser.add_argument("--points-per-side", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--model", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    device = default_device()
    with tempfile.TemporaryDirectory() as tmp:
        rgb, instances = _render(max(args.images, args.sam_images), Path(tmp))
    results: dict[str, dict] = {}
    for method in ("none", "gt", "felzenszwalb"):
        cfg = params(**{"segments.method": method})
        segment = build_segmenter(cfg.segments, cfg.sam, weights_dir=".")
        seconds = []
        for i in range(args.images):
            start = time.perf_counter()
            segment(rgb[i], instances[i])
            seconds.append(time.perf_counter() - start)
        results[method] = _entry(seconds)
        print(f"{method:>16}: {results[method]['seconds_per_image']:.4f} s/image")

    start = time.perf_counter()
    model = build_sam(model=args.model, init_seed=0).to(device)
    build_s = time.perf_counter() - start
    for pps in args.points_per_side:
        segmenter = SamSegmenter(model, params(**{"sam.points_per_side": pps}).sam)
        predictor = segmenter.generator.predictor
        encode_times: list[float] = []
        set_image = predictor.set_image

        def timed_set_image(image, *a, _set=set_image, _times=encode_times, **kw):
            t0 = time.perf_counter()
            _set(image, *a, **kw)
            if device.type == "cuda":
                torch.cuda.synchronize()
            _times.append(time.perf_counter() - t0)

        predictor.set_image = timed_set_image
        seconds, masks = [], []
        for i in range(args.sam_images):
            start = time.perf_counter()
            masks.append(len(segmenter.masks(rgb[i])))
            seconds.append(time.perf_counter() - start)
        name = f"sam_{args.model}_pps{pps}"
        results[name] = _entry(
            seconds,
            encoder_seconds_per_image=float(np.mean(encode_times)),
            masks_per_image=float(np.mean(masks)),
            points_per_side=pps,
        )
        r = results[name]
        print(
            f"{name:>16}: {r['seconds_per_image']:.2f} s/image (encoder {r['encoder_seconds_per_image']:.2f} s), "
            f"NYUv2 x{NYUV2_IMAGES}: {r['nyuv2_hours']:.2f} h"
        )

    report = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "image_size": list(rgb.shape[1:3]),
        "sam_weights": "seeded random (pretrained: none)",
        "sam_build_seconds": build_s,
        "nyuv2_images": NYUV2_IMAGES,
        "methods": results,
    }
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
