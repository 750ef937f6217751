"""clip_features: preprocessing order, store layout and attrs, resume after a kill, refusing a mismatched store."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import zarr

from depthcore.config import ClipConfig
from depthcore.data.store import StoreError, open_store
from depthcore.features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_clip_features,
    extract_clip_features,
    preprocess,
)
from depthcore.models.clip_backbone import ClipBackbone

TINY_LAYERS = {"stem": (8, 2), "layer1": (32, 4), "layer2": (64, 8), "layer3": (128, 16), "layer4": (256, 32)}


def tiny_backbone(seed: int = 0) -> ClipBackbone:
    """A ModifiedResNet CLIP with one block per stage and width 8 (layer4: 256 channels, text dim 128)."""
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(
        embed_dim=128,
        vision_cfg={"layers": [1, 1, 1, 1], "width": 8, "head_width": 8, "image_size": 64},
        text_cfg={"width": 32, "heads": 2, "layers": 1},
        quick_gelu=True,
    )
    return ClipBackbone(model, model_name="RN50-quickgelu")


def test_preprocess_crops_then_normalises():
    rgb = np.zeros((1, 480, 640, 3), dtype=np.uint8)
    rgb[0, 56, 60] = (255, 0, 51)  # first pixel of the crop
    rgb[0, 55, 60] = 255  # just above the crop: dropped
    x = preprocess(rgb)
    assert x.shape == (1, 3, 416, 544) and x.dtype == torch.float32
    expected = (np.array([1.0, 0.0, 0.2]) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(x[0, :, 1, 1].numpy(), -np.array(IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-6)
    with pytest.raises(ValueError, match="480 x 640 x 3"):
        preprocess(np.zeros((1, 416, 544, 3), dtype=np.uint8))


def test_store_layout_attrs_and_flip_view(synthetic_dataset, tmp_path):
    backbone = tiny_backbone()
    cfg = ClipConfig(pretrained="none", cache_layers=("stem", "layer4"), batch_size=4)
    out = extract_clip_features(
        synthetic_dataset, tmp_path / "clip.zarr", backbone=backbone, cfg=cfg, weights_sha256=None, progress=False
    )
    group = open_store(out, required=("stem", "layer4"))
    n = zarr.open_group(str(synthetic_dataset), mode="r")["rgb"].shape[0]
    assert sorted(group.array_keys()) == ["layer4", "stem"]
    for name in ("stem", "layer4"):
        c, stride = TINY_LAYERS[name]
        assert group[name].shape == (n, 2, c, 416 // stride, 544 // stride)
        assert group[name].dtype == np.float16 and group[name].chunks == (1, *group[name].shape[1:])
        assert group.attrs["layers"][name] == {"channels": c, "stride": stride, "shape": list(group[name].shape[2:])}
    assert group.attrs["crop"] == [56, 472, 60, 604] and group.attrs["model"] == "RN50-quickgelu"
    assert group.attrs["normalisation"]["mean"] == list(IMAGENET_MEAN)
    assert group.attrs["weights"] == "none (seed 0)" and group.attrs["n_images"] == n
    # view 1 holds the features of the mirrored image
    rgb = zarr.open_group(str(synthetic_dataset), mode="r")["rgb"][:1]
    with torch.no_grad():
        mirrored = backbone.forward_features(preprocess(rgb).flip(-1), ("layer4",))["layer4"]
    np.testing.assert_allclose(group["layer4"][0, 1].astype(np.float32), mirrored[0].numpy(), rtol=1e-2, atol=1e-3)
    check_clip_features(group, cfg, layers=("layer4",))
    with pytest.raises(StoreError, match="model: store has 'RN50-quickgelu', params ask for 'RN101'"):
        check_clip_features(group, ClipConfig(model="RN101", pretrained="none"))
    with pytest.raises(StoreError, match="weights: store has 'none \\(seed 0\\)', params ask for 'openai'"):
        check_clip_features(group, ClipConfig())
    with pytest.raises(StoreError, match=r"lacks layer\(s\) \['layer2'\]"):
        check_clip_features(group, cfg, layers=("layer2",))
    zarr.open_group(str(out), mode="r+").attrs["crop"] = [0, 416, 0, 544]
    with pytest.raises(StoreError, match="crop: store has"):
        check_clip_features(open_store(out), cfg)


class _Killed(Exception):
    pass


def test_resume_after_kill_gives_identical_store(synthetic_dataset, tmp_path, monkeypatch):
    cfg = ClipConfig(pretrained="none", cache_layers=("layer3", "layer4"), batch_size=2)
    full = extract_clip_features(
        synthetic_dataset,
        tmp_path / "full.zarr",
        backbone=tiny_backbone(),
        cfg=cfg,
        weights_sha256=None,
        progress=False,
    )
    backbone = tiny_backbone()
    real = ClipBackbone.forward_features
    calls = []

    def dies_on_second_batch(self, images, layers):
        calls.append(images.shape[0])
        if len(calls) == 2:
            raise _Killed
        return real(self, images, layers)

    monkeypatch.setattr(ClipBackbone, "forward_features", dies_on_second_batch)
    out = tmp_path / "resumed.zarr"
    with pytest.raises(_Killed):
        extract_clip_features(synthetic_dataset, out, backbone=backbone, cfg=cfg, weights_sha256=None, progress=False)
    assert not out.exists()
    with pytest.raises(StoreError, match="unfinished"):
        open_store(out)
    monkeypatch.setattr(ClipBackbone, "forward_features", real)
    n_before = len(calls)
    extract_clip_features(synthetic_dataset, out, backbone=backbone, cfg=cfg, weights_sha256=None, progress=False)
    a, b = open_store(full), open_store(out)
    n = a["layer4"].shape[0]
    assert n_before == 2  # the first batch (2 images) was kept, the resumed run started at image 2
    assert dict(a.attrs) == dict(b.attrs)
    for name in ("layer3", "layer4"):
        np.testing.assert_array_equal(a[name][:], b[name][:])
    assert n > 2
