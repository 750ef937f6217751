"""Zero-shot predictions from cached features, the shared evaluation and the depth figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from conftest import make_params, tiny_backbone

from depthcore.data.splits import SplitError, split_indices
from depthcore.data.store import ResumableStore, Store
from depthcore.evaluation.figures import save_depth_figure
from depthcore.evaluation.report import evaluate_predictions
from depthcore.features.backbone import extract_features
from depthcore.features.head import build_depthclip_head
from depthcore.features.zeroshot import predict_zeroshot
from depthcore.models.heads.depthclip import HeadError, zeroshot_depth

EVAL = make_params().eval


def _as_store(path, depth):
    store = ResumableStore(path, key=None)
    store.array("depth", depth.shape, np.float32)[:] = depth
    store.mark_done(len(depth))
    return Store(store.commit({}))


def test_evaluate_predictions_hand_values(synthetic_dataset, tmp_path):
    dataset = Store(synthetic_dataset)
    gt = dataset.read("depth_eval")
    test = split_indices(dataset.read("split"), "test")
    assert len(test) > 0 and all(dataset.read("split")[i] == 2 for i in test)
    metrics, rows = evaluate_predictions(_as_store(tmp_path / "p.zarr", gt * 1.1), dataset, cfg=EVAL)
    assert metrics["n_images"] == len(test) == len(rows)
    assert metrics["abs_rel"] == pytest.approx(0.1, rel=1e-5) and metrics["d1"] == 1.0
    assert metrics["log10"] == pytest.approx(np.log10(1.1), rel=1e-5)
    assert [row["index"] for row in rows] == list(test)
    with pytest.raises(ValueError, match="shape"):
        evaluate_predictions(_as_store(tmp_path / "q.zarr", gt[:, :10]), dataset, cfg=EVAL)
    with pytest.raises(SplitError, match="valid splits"):
        split_indices(dataset.read("split"), "testing")


def test_zeroshot_from_cache_matches_backbone_and_evaluates(synthetic_dataset, tmp_path):
    backbone = tiny_backbone()
    features = extract_features(
        synthetic_dataset,
        tmp_path / "backbone.zarr",
        backbone=backbone,
        weights={},
        layers=("layer4",),
        key=None,
        batch_size=3,
        progress=False,
    )
    head = build_depthclip_head(backbone=backbone, cfg=make_params().depthclip)
    assert head.text.shape == (7, 128)
    out = predict_zeroshot(features, tmp_path / "zs.zarr", head=head, key=None, batch_size=3, progress=False)
    depth = Store(out, required=("depth",))
    layer4 = Store(features).read("layer4")
    n = layer4.shape[0]
    assert depth.shape("depth") == (n, 480, 640)
    pred = depth.read("depth")
    assert pred.dtype == np.float32
    inside = pred[:, 56:472, 60:604]
    assert (inside >= 1.0 - 1e-5).all() and (inside <= 3.0 + 1e-5).all()  # a convex mix of the bins
    assert (pred[:, :56] == 0).all() and (pred[:, :, 604:] == 0).all()
    np.testing.assert_allclose(pred[1], zeroshot_depth(head, torch.from_numpy(layer4[1:2]))[0, 0])

    metrics, _ = evaluate_predictions(depth, Store(synthetic_dataset), cfg=EVAL)
    assert metrics["n_images"] >= 1 and 0 <= metrics["d1"] <= 1

    dataset = zarr.open_group(str(synthetic_dataset), mode="r")
    shown = split_indices(dataset["split"][:], "test")[:2]
    png = save_depth_figure(
        tmp_path / "plots" / "zs.png",
        rgb=dataset["rgb"].get_orthogonal_selection((shown,)),
        gt=dataset["depth_eval"].get_orthogonal_selection((shown,)),
        predictions=[("zero-shot", pred[shown]), ("model", pred[shown] * 0.5)],
        titles=[f"image {i}" for i in shown],
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="column 'bad'"):
        save_depth_figure(tmp_path / "x.png", rgb=dataset["rgb"][:1], gt=pred[:1], predictions=[("bad", pred[:1, :5])])


def test_maskclip_head_and_dimension_mismatch():
    backbone = tiny_backbone(embed_dim=64)  # layer4 256 channels: every second one gives 128 != 64
    with pytest.raises(HeadError, match="use dense: maskclip"):
        build_depthclip_head(backbone=backbone, cfg=make_params().depthclip)
    head = build_depthclip_head(backbone=backbone, cfg=make_params({"depthclip.dense": "maskclip"}).depthclip)
    depth = head(torch.randn(2, 256, 13, 17))
    assert depth.shape == (2, 1, 13, 17) and ((depth >= 1.0) & (depth <= 3.0)).all()
