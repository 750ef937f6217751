"""Learning tests on the offline data (rendered rooms, informative random CLIP), over three seeds each.

The published MSA (its architecture at narrow widths, so that three seeds fit a CI budget on a CPU)
trained with L1 must beat both the zero-shot prediction and the constant train-mean depth on the test
rooms by at least 15 % in abs_rel and in d1; trained self-supervised on the rooms' real second views it
must improve its validation abs_rel clearly over the untrained model. The margins measured over seeds
are stated at each threshold.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_params

from depthcore.data.splits import read_split, split_indices
from depthcore.data.store import ResumableStore, Store
from depthcore.evaluation import evaluate_predictions
from depthcore.paths import Paths
from depthcore.pipeline import build_inputs
from depthcore.run import evaluate_checkpoint, train_model

# 48 images, 2 per room: 24 rooms, 6 of them test (12 images), 2 val (4), 16 train (32).
DATA = {"data.synthetic.images": 48, "data.synthetic.views_per_room": 2, "ssl.pairs": "dataset"}
SMALL_MSA = {
    "adapters.msa.widths": [64, 64, 32, 32, 16, 16],
    "train.preset": "custom",
    "train.optimizer": "sgd",
    "train.lr": 0.05,
    "train.schedule": "cosine",
    "train.batch_size": 2,
    "train.select": "last",
}
SUPERVISED = DATA | SMALL_MSA | {"loss": "l1", "train.epochs": 7}
SELF_SUPERVISED = DATA | SMALL_MSA | {"loss": "ssl", "train.epochs": 2}
MARGIN = 0.15  # required improvement over each baseline, relative


@pytest.fixture(scope="module")
def rooms(tmp_path_factory) -> Paths:
    return build_inputs(make_params(DATA), Paths().under(tmp_path_factory.mktemp("rooms")))


def run_paths(rooms: Paths, root, seed: int) -> Paths:
    own = {
        name: root / f"seed{seed}" / getattr(rooms, name).name
        for name in (
            "model",
            "train_metrics",
            "train_curves",
            "predictions",
            "eval_metrics",
            "eval_per_image",
            "eval_figure",
        )
    }
    return dataclasses.replace(rooms, **own)


def baselines(rooms: Paths, tmp_path) -> dict[str, dict[str, float]]:
    """Test metrics of the zero-shot prediction and of the constant mean depth of the training images."""
    dataset = Store(rooms.dataset)
    eval_cfg = make_params(DATA).eval
    zeroshot, _ = evaluate_predictions(Store(rooms.zeroshot), dataset, cfg=eval_cfg)
    train = dataset.read("depth", split_indices(read_split(rooms.split, dataset.shape("rgb")[0]), "train"))
    store = ResumableStore(tmp_path / "constant.zarr", key=None)
    store.array("depth", dataset.shape("depth_eval"), np.float32)[:] = train[train > 0].mean()
    constant, _ = evaluate_predictions(Store(store.commit({})), dataset, cfg=eval_cfg)
    return {"zeroshot": zeroshot, "constant": constant}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_published_msa_beats_zero_shot_and_mean_depth(rooms, tmp_path, seed):
    params = make_params(SUPERVISED | {"seed": seed})
    paths = run_paths(rooms, tmp_path, seed)
    train_model(params, paths, resume_key=None, progress=False)
    ours = evaluate_checkpoint(params, paths, progress=False)
    for name, base in baselines(rooms, tmp_path).items():
        # measured over seeds 0, 1, 2 (2 CPU cores, ~2 min each): abs_rel 0.222 / 0.207 / 0.216, i.e. 26 / 32 / 29 %
        # below the better baseline (the constant mean depth, 0.302); d1 0.585 / 0.567 / 0.556, i.e. 24 / 20 / 18 %
        # above it (0.471); the zero-shot prediction (random CLIP) is far behind both
        assert ours["abs_rel"] <= (1 - MARGIN) * base["abs_rel"], (name, ours["abs_rel"], base["abs_rel"])
        assert ours["d1"] >= (1 + MARGIN) * base["d1"], (name, ours["d1"], base["d1"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_self_supervised_msa_learns_metric_depth_from_real_second_views(rooms, tmp_path, seed):
    params = make_params(SELF_SUPERVISED | {"seed": seed})
    paths = run_paths(rooms, tmp_path, seed)
    train_model(params, paths, resume_key=None, progress=False)
    rows = [line.split(",") for line in paths.train_curves.read_text().splitlines()]
    columns = rows[0]
    start, end = (dict(zip(columns, row, strict=True)) for row in (rows[1], rows[-1]))
    print(f"seed {seed}: val abs_rel {start['val_abs_rel']} untrained, {end['val_abs_rel']} after 2 epochs")
    assert start["epoch"] == "0" and float(end["val_photometric"]) < 0.1  # it reconstructs the target
    # measured over seeds 0, 1, 2: val abs_rel 0.96 / 1.00 / 1.00 untrained, 0.31 / 0.39 / 0.48 after 2 epochs
    # (ratios 0.32 / 0.39 / 0.48; the bound 0.6 leaves 0.12 over the worst seed)
    assert float(end["val_abs_rel"]) <= 0.6 * float(start["val_abs_rel"])
