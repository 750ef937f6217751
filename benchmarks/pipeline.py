"""Wall time of `dvc exp run -S adapter=clip_adapter` vs a full offline `dvc repro`, as a ratio.

Runs in a temporary clone of this working tree (tracked + untracked, not ignored files), on the synthetic
source with random CLIP/SAM weights and Felzenszwalb segments (SAM on CPU is benchmarked separately
in benchmarks/segments.py). Also prints `dvc metrics diff` after the experiment.
Usage: python benchmarks/pipeline.py [--images 8] [--epochs 3]
Writes benchmarks/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_pipeline import OFFLINE_RUN, _run, dvc, make_clone, ran  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "pipeline.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    overrides = {**OFFLINE_RUN, "data.synthetic.images": args.images, "train.epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        clone = make_clone(Path(tmp), overrides)
        t0 = time.perf_counter()
        full_out = dvc(clone, "repro")
        full_s = time.perf_counter() - t0
        _run(["git", "add", "-A"], clone)
        _run(["git", "commit", "-qm", "baseline"], clone)
        t0 = time.perf_counter()
        exp_out = dvc(clone, "exp", "run", "-S", "adapter=clip_adapter")
        exp_s = time.perf_counter() - t0
        diff = dvc(clone, "metrics", "diff", "--precision", "3")
    results = {
        "params": overrides,
        "full_repro_s": full_s,
        "full_repro_stages": sorted(ran(full_out)),
        "exp_run_clip_adapter_s": exp_s,
        "exp_run_stages": sorted(ran(exp_out)),
        "exp_over_full_ratio": exp_s / full_s,
        "metrics_diff": diff,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "metrics_diff"}, indent=2))
    print(diff)


if __name__ == "__main__":
    main()
