"""Peak memory of ``depthcore predict`` on one 48 MP (8000 x 6000) JPEG.

Builds the offline pipeline's inputs (6 rendered rooms, random-weight CLIP RN50 and its DepthCLIP head) in a
temporary folder, writes a rendered room upscaled to 8000 x 6000 as a JPEG (quality 90), and runs DepthCLIP
zero-shot prediction on it in a fresh process (``predict_images``: everything the command does, writing the
.npy, the 16-bit PNG and the colourised PNG at 8000 x 6000) for each mode: the default (whole image, tiled) and
``--crop-only``. The child process reports its peak resident set size (``getrusage`` ``ru_maxrss``) after loading
the model and predicting a small warm-up image (the baseline: torch, the model, one forward pass), and after the
48 MP image; the difference is what the large image cost, set against the bytes of its float32 depth
(48 MP x 4 B = 192 MB, the .npy it writes: inherent).

Usage: python benchmarks/predict_memory.py      (~2 min on 2 CPU cores)
Writes benchmarks/results/predict_memory.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "predict_memory.json"
SIZE = (6000, 8000)  # height x width: 48 MP
MB = 1 << 20
KIB = 1024  # ru_maxrss is in KiB on Linux


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far, bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB


def child(pipeline: Path, image: Path, warmup: Path, out: Path, crop_only: bool) -> None:
    """Predict ``warmup`` then ``image`` with DepthCLIP zero-shot; print the peaks as JSON."""
    import torch

    from depthcore.config.paths import Paths
    from depthcore.inference.live import LivePredictor
    from depthcore.inference.predict import OutputOptions, predict_images

    paths = Paths().under(pipeline)
    predictor = LivePredictor.zeroshot(
        backbone_weights=paths.backbone_weights, head=paths.clip_head, device=torch.device("cpu")
    )
    options = OutputOptions(crop_only=crop_only)
    predict_images(predictor, [warmup], out / "warmup", options=options, progress=False)
    baseline = peak_rss_bytes()
    start = time.perf_counter()
    summary = predict_images(predictor, [image], out / "large", options=options, progress=False)
    seconds = time.perf_counter() - start
    assert summary.written == [image], summary
    print(json.dumps({"baseline": baseline, "peak": peak_rss_bytes(), "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=4, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--crop-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, crop_only=args.crop_only)
        return

    import numpy as np
    from PIL import Image

    from depthcore.config.offline import OFFLINE
    from depthcore.config.params import load_params
    from depthcore.config.paths import Paths
    from depthcore.data.synthetic import render_sample
    from depthcore.pipeline.build import build_inputs

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        overrides = OFFLINE | {"data.synthetic.images": 6, "data.synthetic.views_per_room": 2}
        build_inputs(load_params(REPO / "params.yaml", overrides=overrides), Paths().under(root / "pipeline"))
        room = Image.fromarray(render_sample(2028, 0, views_per_room=1, height=600, width=800).rgb)
        room.resize(SIZE[::-1], Image.Resampling.BILINEAR).save(root / "large.jpg", quality=90)
        room.save(root / "warmup.png")
        del room
        depth_bytes = SIZE[0] * SIZE[1] * np.dtype(np.float32).itemsize
        results: dict = {
            "image": f"{SIZE[1]} x {SIZE[0]} JPEG ({(root / 'large.jpg').stat().st_size / MB:.1f} MB), "
            "DepthCLIP zero-shot with random-weight CLIP RN50, outputs .npy + 16-bit PNG + colourised PNG",
            "depth_float32_mb": round(depth_bytes / MB, 1),
        }
        for mode, flag in (("whole_image", []), ("crop_only", ["--crop-only"])):
            run = subprocess.run(
                [sys.executable, __file__, "--child", str(root / "pipeline"), str(root / "large.jpg"),
                 str(root / "warmup.png"), str(root / mode), *flag],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            figures = json.loads(run.stdout.strip().splitlines()[-1])
            results[mode] = {
                "baseline_peak_rss_mb": round(figures["baseline"] / MB, 1),
                "peak_rss_mb": round(figures["peak"] / MB, 1),
                "added_by_the_image_mb": round((figures["peak"] - figures["baseline"]) / MB, 1),
                "added_per_depth_byte": round((figures["peak"] - figures["baseline"]) / depth_bytes, 2),
                "seconds": round(figures["seconds"], 1),
            }
            print(mode, results[mode], flush=True)
    results["machine"] = f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
