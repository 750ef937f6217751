"""Benchmark of the pairs stage: images/s of each way of making second views (dataset, homography,
reproject) on rendered 480 x 640 rooms, through depthcore.data.pairs.write_pairs (what the stage runs).

Usage: python benchmarks/pairs.py [--images 8]
Writes benchmarks/results/pairs.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from depthcore.config.params import load_params
from depthcore.data.pairs import write_pairs
from depthcore.data.prepare import fetch_data, prepare_dataset

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "pairs.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    n = max(args.images, 3)  # three rooms at least (test, val, train)
    base = {"data.source": "synthetic", "data.synthetic.images": n, "data.synthetic.views_per_room": 1}
    results = {"images": n, "image_size": [480, 640], "methods": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        params = load_params(REPO / "params.yaml", base)
        fetch_data(params.data, tmp / "raw", key=None, progress=False)
        dataset = prepare_dataset("synthetic", tmp / "raw", tmp / "dataset.zarr", key=None, progress=False)
        for method in ("dataset", "homography", "reproject"):
            cfg = load_params(REPO / "params.yaml", base | {"pairs.method": method}).pairs
            start = time.perf_counter()
            write_pairs(cfg, dataset, tmp / f"pairs-{method}.zarr", key=None, progress=False)
            seconds = time.perf_counter() - start
            results["methods"][method] = {"seconds": seconds, "images_per_s": n / seconds}
            print(f"{method:>10}: {n / seconds:6.2f} images/s (NYUv2's 1449 images: {1449 * seconds / n:6.0f} s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
