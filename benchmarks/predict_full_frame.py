"""Depth over the whole image (``depthcore predict``): the error inside the former crop and outside it.

Trains the offline demo (``make repro-offline``'s model, :data:`depthcore.config.offline.DEMO`: the published MSA
at narrow widths, L1, 48 rendered rooms, random-weight CLIP RN50, felzenszwalb segments) once, then predicts
rooms that no training set renders (seed ``ROOMS_SEED``, 480 x 640, so the image is its own frame and the
ground truth lines up pixel for pixel) three ways:

- ``crop_only``: ``--crop-only``, the frame's DepthCLIP crop (rows 56:472, cols 60:604), 0 elsewhere;
- ``tiled``: the default, crop-sized windows at the trained scale blended (:mod:`depthcore.inference.predict`);
- ``stretch``: the alternative, the whole 480 x 640 frame resized (bicubic) into the 416 x 544 crop of a virtual
  frame (reflect-padded around it), its prediction resized back bilinearly: one window, but the scene shown at
  0.85 - 0.87 of the scale the model learnt.

Metrics as the evaluate stage computes them (valid: 1e-3 < gt < 10 m, prediction clamped to [1e-3, 10]; per image,
then averaged), over the pixels inside the crop and those outside it (the frame's margins: 26 % of the frame).

Usage: python benchmarks/predict_full_frame.py [--images 8]   (~10 min on 2 CPU cores: training ~6 min)
Writes benchmarks/results/predict_full_frame.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from depthcore.config.offline import DEMO
from depthcore.config.overrides import with_overrides
from depthcore.config.params import validate_params
from depthcore.config.paths import Paths
from depthcore.data.synthetic import render_sample
from depthcore.evaluation.metrics import DELTA_BASE
from depthcore.geometry.frame import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_WIDTH, crop_shape
from depthcore.inference.frame import FrameMap
from depthcore.inference.live import LivePredictor
from depthcore.inference.predict import crop_depth, full_depth, virtual_frames
from depthcore.pipeline.build import build_inputs
from depthcore.training.run import train_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "predict_full_frame.json"
ROOMS_SEED = 2027  # rooms no training set renders (the demo's use data.synthetic.seed)
EVAL_RANGE_M = (1e-3, 10.0)  # the evaluate stage's valid depth and prediction clamp
METRICS = ("abs_rel", "d1", "rmse")


def stretch_depth(predictor: LivePredictor, image: np.ndarray) -> np.ndarray:
    """480 x 640 float32 depth of a 480 x 640 x 3 frame resized whole into the crop of a virtual frame."""
    h, w = crop_shape(DEPTHCLIP_CROP)
    squeezed = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC))
    frame = virtual_frames(squeezed, [(0, 0)])  # the squeezed image is the crop; reflect-padded around it
    depth = predictor.predict(frame)  # 1 x 1 x 416 x 544
    return F.interpolate(depth, size=(NYU_HEIGHT, NYU_WIDTH), mode="bilinear", align_corners=False)[0, 0].numpy()


def region_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """abs_rel, d1 and rmse (metres) of one image over ``mask``'s valid pixels, as
    :func:`depthcore.evaluation.metrics.image_metrics` computes them (without its Eigen crop: regions here)."""
    lo, hi = EVAL_RANGE_M
    valid = mask & (gt > lo) & (gt < hi) & (pred > lo)
    g, p = gt[valid].astype(np.float64), np.clip(pred[valid].astype(np.float64), lo, hi)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(g - p) / g)),
        "d1": float(np.mean(ratio < DELTA_BASE)),
        "rmse": float(np.sqrt(np.mean((g - p) ** 2))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    params = validate_params(with_overrides(json.loads(json.dumps(_raw_params())), DEMO | {"seed": 0}))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rooms = build_inputs(params, Paths().under(root / "pipeline"))
        paths = dataclasses.replace(rooms, model=root / "model.safetensors", train_metrics=root / "train.json",
                                    train_curves=root / "curves.csv")  # fmt: skip
        train_model(params, paths, resume_key=None, progress=False)
        trained_s = time.perf_counter() - start
        predictor = LivePredictor.from_checkpoint(
            paths.model,
            backbone_weights=paths.backbone_weights,
            head=paths.clip_head,
            sam_weights=paths.sam_weights,
            device=torch.device("cpu"),
        )
        top, bottom, left, right = DEPTHCLIP_CROP
        inside = np.zeros((NYU_HEIGHT, NYU_WIDTH), dtype=bool)
        inside[top:bottom, left:right] = True
        per_image: dict[str, dict[str, list[dict[str, float]]]] = {}
        seconds = {"crop_only": 0.0, "tiled": 0.0, "stretch": 0.0}
        for i in range(args.images):
            sample = render_sample(ROOMS_SEED, i, views_per_room=1)
            fmap = FrameMap.for_image(NYU_HEIGHT, NYU_WIDTH)
            ways = {
                "crop_only": lambda s=sample, m=fmap: crop_depth(predictor, [(s.rgb, m)], 1)[0],
                "tiled": lambda s=sample, m=fmap: full_depth(predictor, [(s.rgb, m)], 4)[0],
                "stretch": lambda s=sample: stretch_depth(predictor, s.rgb),
            }
            for way, run in ways.items():
                t0 = time.perf_counter()
                pred = run()
                seconds[way] += time.perf_counter() - t0
                for region, mask in (("inside_crop", inside), ("outside_crop", ~inside)):
                    if way == "crop_only" and region == "outside_crop":
                        continue  # 0 = no depth there
                    per_image.setdefault(way, {}).setdefault(region, []).append(
                        region_metrics(pred, sample.depth, mask)
                    )
            print(f"image {i + 1}/{args.images}", flush=True)
    figures = {
        way: {
            region: {name: round(float(np.mean([m[name] for m in rows])), 4) for name in METRICS}
            for region, rows in regions.items()
        }
        | {"seconds_per_image": round(seconds[way] / args.images, 2)}
        for way, regions in per_image.items()
    }
    results = {
        "model": "the offline demo (make repro-offline): published MSA at narrow widths, random-weight CLIP RN50, "
        "felzenszwalb segments, trained 10 epochs (L1) on 48 rendered rooms, seed 0",
        "images": f"{args.images} rendered rooms (seed {ROOMS_SEED}), 480 x 640: each its own frame",
        "outside_crop_fraction": round(float((~inside).mean()), 4),
        "figures": figures,
        "train_seconds": round(trained_s, 1),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, cpu",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


def _raw_params() -> dict:
    import yaml

    return yaml.safe_load((REPO / "params.yaml").read_text())


if __name__ == "__main__":
    main()
