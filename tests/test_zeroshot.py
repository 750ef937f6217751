"""Zero-shot predictions from cached features, the shared evaluation and the depth figure."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import zarr

from depthcore.config import ClipConfig, ConfigError, DepthclipConfig, EvalConfig
from depthcore.data.store import open_store
from depthcore.evaluation import evaluate_predictions, split_indices
from depthcore.features import extract_clip_features
from depthcore.models.clip_backbone import ClipBackbone
from depthcore.models.depthclip import build_depthclip_head, zeroshot_depth
from depthcore.viz import save_depth_figure
from depthcore.zeroshot import predict_zeroshot


def _tiny_backbone(embed_dim: int = 128) -> ClipBackbone:
    torch.manual_seed(0)
    model = open_clip.model.CLIP(
        embed_dim=embed_dim,
        vision_cfg={"layers": [1, 1, 1, 1], "width": 8, "head_width": 8, "image_size": 64},
        text_cfg={"width": 32, "heads": 2, "layers": 1},
        quick_gelu=True,
    )
    return ClipBackbone(model, model_name="RN50-quickgelu")


def test_evaluate_predictions_hand_values(synthetic_dataset):
    dataset = open_store(synthetic_dataset)
    gt = dataset["depth_eval"][:]
    test = split_indices(dataset, "test")
    assert len(test) > 0 and all(dataset["split"][i] == 2 for i in test)
    metrics, rows = evaluate_predictions(gt * 1.1, dataset, cfg=EvalConfig())
    assert metrics["n_images"] == len(test) == len(rows)
    assert metrics["abs_rel"] == pytest.approx(0.1, rel=1e-5) and metrics["d1"] == 1.0
    assert metrics["log10"] == pytest.approx(np.log10(1.1), rel=1e-5)
    assert [row["index"] for row in rows] == list(test)
    with pytest.raises(ValueError, match="shape"):
        evaluate_predictions(gt[:, :10], dataset, cfg=EvalConfig())
    with pytest.raises(ValueError, match="valid splits"):
        split_indices(dataset, "testing")


def test_zeroshot_from_cache_matches_backbone_and_evaluates(synthetic_dataset, tmp_path):
    backbone = _tiny_backbone()
    cfg = ClipConfig(pretrained="none", cache_layers=("layer4",), batch_size=3)
    features = open_store(
        extract_clip_features(
            synthetic_dataset, tmp_path / "clip.zarr", backbone=backbone, cfg=cfg, weights_sha256=None, progress=False
        )
    )
    head = build_depthclip_head(backbone=backbone, cfg=DepthclipConfig())
    assert head.text.shape == (7, 128)
    out = predict_zeroshot(
        features, tmp_path / "zs.zarr", head=head, fingerprint={"t": 1}, batch_size=2, progress=False
    )
    depth = open_store(out, required=("depth",))["depth"]
    n = features["layer4"].shape[0]
    assert depth.shape == (n, 480, 640) and depth.dtype == np.float32
    pred = depth[:]
    inside = pred[:, 56:472, 60:604]
    assert (inside >= 1.0 - 1e-5).all() and (inside <= 3.0 + 1e-5).all()  # a convex mix of the bins
    assert (pred[:, :56] == 0).all() and (pred[:, :, 604:] == 0).all()
    np.testing.assert_allclose(pred[1], zeroshot_depth(head, torch.from_numpy(features["layer4"][1:2]))[0, 0])

    metrics, _ = evaluate_predictions(depth, open_store(synthetic_dataset), cfg=EvalConfig())
    assert metrics["n_images"] >= 1 and 0 <= metrics["d1"] <= 1

    dataset = zarr.open_group(str(synthetic_dataset), mode="r")
    shown = split_indices(dataset, "test")[:2]
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
    backbone = _tiny_backbone(embed_dim=64)  # layer4 256 channels: every second one gives 128 != 64
    with pytest.raises(ConfigError, match="use dense: maskclip"):
        build_depthclip_head(backbone=backbone, cfg=DepthclipConfig())
    head = build_depthclip_head(backbone=backbone, cfg=DepthclipConfig(dense="maskclip"))
    depth = head(torch.randn(2, 256, 13, 17))
    assert depth.shape == (2, 1, 13, 17) and ((depth >= 1.0) & (depth <= 3.0)).all()
