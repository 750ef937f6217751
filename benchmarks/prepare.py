"""Benchmark of the data layer: images/s and peak RSS of `prepare`.

1. synthetic source: fetch_data (render) and prepare, each timed in its own process;
2. NYUv2 reader: prepare from a generated MATLAB v7.3 file of NYU-sized (480 x 640) images.

Each measurement runs in a fresh subprocess so that its peak RSS (ru_maxrss) is its own.
Usage: python benchmarks/prepare.py [--synthetic-images 32] [--mat-images 50]
Writes benchmarks/results/prepare.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "prepare.json"

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from depthcore.data.prepare import fetch_data, prepare_dataset
from depthcore.config.params import load_params
data = load_params({params_file!r}, {overrides!r}).data
t0 = time.perf_counter()
if {step!r} == "fetch":
    fetch_data(data, {raw!r}, key=None, progress=False)
else:
    prepare_dataset(data.source, {raw!r}, {out!r}, key=None, progress=False)
seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _measure(step: str, overrides: dict, raw: Path, out: Path) -> dict:
    code = _CHILD.format(
        repo=str(REPO),
        params_file=str(REPO / "params.yaml"),
        overrides=overrides,
        step=step,
        raw=str(raw),
        out=str(out),
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _baseline_rss_mb() -> float:
    code = (
        f"import sys, resource; sys.path.insert(0, {str(REPO)!r}); import depthcore.data.prepare; "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def _write_mat(path: Path, n: int) -> None:
    """A v7.3-layout file (axes reversed, 512-byte userblock) of n random 480 x 640 images."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    with h5py.File(path, "w", userblock_size=512) as f:
        specs = {
            "images": ((n, 3, 640, 480), np.uint8),
            "depths": ((n, 640, 480), np.float32),
            "rawDepths": ((n, 640, 480), np.float32),
            "labels": ((n, 640, 480), np.uint16),
            "instances": ((n, 640, 480), np.uint8),
        }
        for name, (shape, dtype) in specs.items():
            ds = f.create_dataset(name, shape, dtype=dtype, chunks=(1, *shape[1:]))
            for i in range(n):  # written image by image so the generator stays small too
                if dtype == np.float32:
                    ds[i] = rng.uniform(0.5, 9.5, shape[1:]).astype(dtype)
                else:
                    ds[i] = rng.integers(0, 40 if name != "images" else 256, shape[1:]).astype(dtype)
        refs = f.create_dataset("scenes", (1, n), dtype=h5py.ref_dtype)
        for i in range(n):
            name = f"scene_{i // 5:04d}"
            refs[0, i] = f.create_dataset(f"#refs#/s{i}", data=np.array([[ord(c)] for c in name], np.uint16)).ref
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, depthcore benchmark")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--synthetic-images", type=int, default=32)
    parser.add_argument("--mat-images", type=int, default=50)
    args = parser.parse_args()
    import numpy as np
    import scipy.io

    results: dict = {"baseline_import_rss_mb": _baseline_rss_mb()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        syn = {"data.source": "synthetic", "data.synthetic.images": args.synthetic_images}
        for step in ("fetch", "prepare"):
            m = _measure(step, syn, tmp / "raw", tmp / "dataset.zarr")
            m["images_per_s"] = args.synthetic_images / m["seconds"]
            results[f"synthetic_{step}"] = m

        raw = tmp / "nyu"
        raw.mkdir()
        _write_mat(raw / "nyu_depth_v2_labeled.mat", args.mat_images)
        n_train = args.mat_images * 11 // 20
        scipy.io.savemat(
            raw / "splits.mat",
            {
                "trainNdxs": np.arange(1, n_train + 1)[:, None],
                "testNdxs": np.arange(n_train + 1, args.mat_images + 1)[:, None],
            },
        )
        results["mat_file_mb"] = (raw / "nyu_depth_v2_labeled.mat").stat().st_size / 2**20
        m = _measure("prepare", {"data.source": "nyuv2"}, raw, tmp / "nyu.zarr")
        m["images_per_s"] = args.mat_images / m["seconds"]
        results["nyuv2_mat_prepare"] = m
        results["nyuv2_mat_images"] = args.mat_images
        results["nyuv2_extrapolated_1449_s"] = 1449 / m["images_per_s"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
