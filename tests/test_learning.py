"""Learning tests on the offline data (rendered rooms, informative random CLIP), over three seeds each.

The offline demo (``make repro-offline``: the published MSA at narrow widths, trained with L1 on 48 rendered
images, depthcore.config.offline.DEMO) must beat both the zero-shot prediction and the constant train-mean
depth on the test rooms by at least 15 % in abs_rel and in d1; trained self-supervised on the rooms' real
second views it must reconstruct the target and reach metric depth. The margins measured over
seeds are stated at each threshold.
"""

from __future__ import annotations

import csv
import dataclasses

import pytest
from conftest import default_raw

from depthcore.config.offline import DEMO
from depthcore.config.overrides import with_overrides
from depthcore.config.params import validate_params
from depthcore.config.paths import Paths
from depthcore.data.store import Store
from depthcore.evaluation.evaluate import evaluate_checkpoint
from depthcore.evaluation.report import evaluate_predictions
from depthcore.pipeline.build import build_inputs
from depthcore.training.run import train_model

pytestmark = pytest.mark.slow
# 48 images, 2 per room: 24 rooms, 6 of them test (12 images), 2 val (4), 16 train (32).
SELF_SUPERVISED = {"loss": "ssl", "train.epochs": 2, "train.batch_size": 2, "train.select": "last"}
MARGIN = 0.15  # required improvement over each baseline, relative
OWN_OUTPUTS = ("model", "train_metrics", "train_curves", "predictions", "eval_metrics", "eval_per_image", "eval_figure")


def demo_params(overrides: dict | None = None):
    return validate_params(with_overrides(default_raw(), DEMO | (overrides or {})))


@pytest.fixture(scope="module")
def rooms(tmp_path_factory) -> Paths:
    return build_inputs(demo_params(), Paths().under(tmp_path_factory.mktemp("rooms")))


def run_paths(rooms: Paths, root, seed: int) -> Paths:
    return dataclasses.replace(
        rooms, **{name: root / f"seed{seed}" / getattr(rooms, name).name for name in OWN_OUTPUTS}
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_offline_demo_beats_zero_shot_and_the_constant_train_mean_depth(rooms, tmp_path, seed):
    params = demo_params({"seed": seed})
    paths = run_paths(rooms, tmp_path, seed)
    train_model(params, paths, resume_key=None, progress=False)
    ours = evaluate_checkpoint(params, paths, progress=False)
    zeroshot, _ = evaluate_predictions(Store(rooms.zeroshot), Store(rooms.dataset), cfg=params.eval)
    for name, base in {"constant": ours["constant_mean"], "zeroshot": zeroshot}.items():
        # measured over seeds 0, 1, 2 (7 min each on one of 2 CPU cores): abs_rel 0.210 / 0.217 / 0.217, i.e.
        # 30 / 27 / 27 % below the constant train-mean depth (0.299); d1 0.571 / 0.560 / 0.557, i.e. 21 / 19 / 18 %
        # above it (0.472); the zero-shot prediction (random CLIP: abs_rel 0.327, d1 0.271) is far behind both
        assert ours["abs_rel"] <= (1 - MARGIN) * base["abs_rel"], (name, ours["abs_rel"], base["abs_rel"])
        assert ours["d1"] >= (1 + MARGIN) * base["d1"], (name, ours["d1"], base["d1"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_self_supervised_msa_learns_metric_depth_from_real_second_views(rooms, tmp_path, seed):
    params = demo_params(SELF_SUPERVISED | {"seed": seed})
    paths = run_paths(rooms, tmp_path, seed)
    train_model(params, paths, resume_key=None, progress=False)
    curves = list(csv.DictReader(paths.train_curves.open()))
    after = evaluate_checkpoint(params, paths, progress=False)
    # measured over seeds 0, 1, 2: the val photometric error after 2 epochs 0.025 / 0.044 / 0.041 (untrained:
    # undefined / 0.396 / undefined, its near-0 m depth warps no pixel into the source), so the bound 0.1 leaves
    # 0.056 over the worst seed; test abs_rel 0.321 / 0.474 / 0.506, metric depth learned from the poses alone
    # (the untrained model predicts about 0 m; the constant train-mean depth, which sees labels, scores 0.299)
    assert curves[0]["epoch"] == "0" and float(curves[-1]["val_loss"]) < 0.1  # it reconstructs the target
    assert after["abs_rel"] <= 0.6
