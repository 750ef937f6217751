"""Learning on the offline data over seeds: the offline demo and its self-supervised variant, trained per seed.

The offline demo (``make repro-offline``: the published MSA at narrow widths, trained with L1 on 48 rendered
rooms' images, :data:`depthcore.config.offline.DEMO`) and the same model trained self-supervised on the rooms'
real second views (:data:`SELF_SUPERVISED`), each once per seed on the same inputs (built once, as the pipeline
builds them). For each run it records the test metrics beside those of the constant train-mean depth and of
DepthCLIP's zero-shot prediction, and (self-supervised) the validation photometric error per epoch.

Writes benchmarks/results/learning.json: every seed's figures and the fingerprint of the code and the settings
they ran on (:func:`fingerprint`). ``tests/test_learning.py`` applies its stated thresholds to every recorded
seed and fails when the fingerprint no longer matches the current code, so a change of the training path is
measured here again before it lands; its slow tier trains seed 0 of the demo live (the smoke check).

    python benchmarks/learning.py                     # seeds 0 1 2: ~25 min on 2 cores (one run per core)
    python benchmarks/learning.py --seeds 0 --jobs 1  # one seed

Each run uses one torch thread (as the test tiers' workers do), so a run gives the same figures here and there.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import multiprocessing
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from depthcore.closure import REPO
from depthcore.config.offline import DEMO
from depthcore.config.overrides import dotted_values, with_overrides
from depthcore.config.params import Params, validate_params
from depthcore.config.paths import PARAMS_FILE, Paths
from depthcore.io import sha256_of, write_json_atomic
from depthcore.pipeline.deps import code_closure
from depthcore.training.inputs import plugin_files, run_settings

RESULTS = REPO / "benchmarks" / "results" / "learning.json"
# The modules whose functions the runs call (inputs, training, evaluation): the code the figures depend on is what
# these run, followed through their imports, and the chosen adapter's and losses' plugin modules.
TRAINING_PATH = (
    "depthcore/pipeline/build.py",
    "depthcore/training/run.py",
    "depthcore/evaluation/evaluate.py",
    "depthcore/evaluation/report.py",
)
SEEDS = (0, 1, 2)
# The demo trained self-supervised: 2 epochs of batch 2 on the rooms' real second views, the last epoch kept.
SELF_SUPERVISED = {"loss": "ssl", "train.epochs": 2, "train.batch_size": 2, "train.select": "last"}
EXPERIMENTS = {"demo": {}, "self_supervised": SELF_SUPERVISED}  # name -> overrides on top of DEMO
# The settings the inputs (rendered rooms, features, zero-shot, segments, pairs) are built from.
INPUT_KEYS = ("data", "clip", "backbone", "depthclip", "segments", "pairs", "eval")
METRICS = ("abs_rel", "d1", "rmse")
# A run's own outputs, apart from the inputs every run of the benchmark shares.
OWN_OUTPUTS = ("model", "train_metrics", "train_curves", "predictions", "eval_metrics", "eval_per_image", "eval_figure")


def experiment_params(name: str, seed: int) -> Params:
    """The validated params of experiment ``name`` at ``seed``: params.yaml, the demo, the experiment's own."""
    raw = yaml.safe_load((REPO / PARAMS_FILE).read_text())
    return validate_params(with_overrides(raw, DEMO | EXPERIMENTS[name] | {"seed": seed}))


def fingerprint() -> dict[str, str]:
    """What the recorded figures are a function of, hashed: ``code``, every project file the runs execute
    (:data:`TRAINING_PATH` followed through its imports, plus the adapter's and the losses' plugin modules);
    ``config``, the settings the inputs are built from and each experiment's training settings (what the
    train_inputs stage records: the params keys a run reads, the train settings in effect)."""
    params = {name: experiment_params(name, 0) for name in EXPERIMENTS}
    files = set().union(*(code_closure(module) for module in TRAINING_PATH))
    for p in params.values():
        files |= set(plugin_files(p))
    code = {f: sha256_of(REPO / f) for f in sorted(files)}
    config = {"inputs": dotted_values(params["demo"], INPUT_KEYS)}
    config |= {name: {k: v for k, v in run_settings(p).items() if k != "code"} for name, p in params.items()}
    return {"code": _digest(code), "config": _digest(config)}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def build_rooms(root: Path) -> Paths:
    """The demo's inputs (48 rendered images, random-RN50 features, zero-shot depth, segments, pairs) under
    ``root``, as the pipeline's stages build them."""
    from depthcore.pipeline.build import build_inputs

    return build_inputs(experiment_params("demo", 0), Paths().under(root))


def run_paths(rooms: Paths, root: Path) -> Paths:
    """``rooms`` with a run's own outputs under ``root``."""
    return dataclasses.replace(rooms, **{name: root / getattr(rooms, name).name for name in OWN_OUTPUTS})


def _figures(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: round(float(metrics[name]), 6) for name in METRICS}


def run_experiment(name: str, seed: int, rooms: Paths, root: Path) -> dict[str, Any]:
    """Train experiment ``name`` at ``seed`` on ``rooms`` and evaluate it on the test rooms: its test figures,
    the constant train-mean depth's and the zero-shot prediction's, its epochs' validation losses, seconds."""
    import torch

    from depthcore.data.store import Store
    from depthcore.evaluation.evaluate import evaluate_checkpoint
    from depthcore.evaluation.report import evaluate_predictions
    from depthcore.training.run import train_model

    torch.set_num_threads(1)
    params = experiment_params(name, seed)
    paths = run_paths(rooms, root / f"{name}-seed{seed}")
    start = time.perf_counter()
    train_model(params, paths, resume_key=None, progress=False)
    ours = evaluate_checkpoint(params, paths, progress=False)
    zeroshot, _ = evaluate_predictions(Store(rooms.zeroshot), Store(rooms.dataset), cfg=params.eval)
    curves = list(csv.DictReader(paths.train_curves.open()))
    return {
        "test": _figures(ours),
        "constant_mean": _figures(ours["constant_mean"]),
        "zeroshot": _figures(zeroshot),
        "val_loss": [None if row["val_loss"] in ("", "nan") else round(float(row["val_loss"]), 6) for row in curves],
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one torch thread each (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # the inputs too: the figures then do not depend on this machine's core count
    before = fingerprint()
    with tempfile.TemporaryDirectory(prefix="depthcore-learning-") as tmp:
        start = time.perf_counter()
        rooms = build_rooms(Path(tmp) / "rooms")
        built = time.perf_counter() - start
        print(f"inputs built in {built:.0f} s", flush=True)
        runs = [(name, seed) for seed in args.seeds for name in EXPERIMENTS]
        spawn = multiprocessing.get_context("spawn")  # a fork of a process that ran torch's threads may hang
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=spawn) as pool:
            futures = {run: pool.submit(run_experiment, *run, rooms, Path(tmp)) for run in runs}
            figures: dict[str, dict[str, Any]] = {name: {} for name in EXPERIMENTS}
            for (name, seed), future in futures.items():
                figures[name][str(seed)] = future.result()
                print(f"{name} seed {seed}: {json.dumps(figures[name][str(seed)])}", flush=True)
    if fingerprint() != before:
        raise SystemExit("the training path's code or settings changed while the benchmark ran: run it again")
    result = {
        "fingerprint": before,
        "settings": {name: DEMO | overrides for name, overrides in EXPERIMENTS.items()},
        "machine": {"cpu": platform.processor() or platform.machine(), "torch_threads_per_run": 1, "jobs": args.jobs},
        "inputs_seconds": round(built, 1),
        "experiments": figures,
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
