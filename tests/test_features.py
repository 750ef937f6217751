"""features: preprocessing order, store layout and attrs, resume after a kill (skipping the finished
images), and a fresh start when the inputs changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from conftest import tiny_backbone

from depthcore.data.store import Store, StoreError
from depthcore.features.backbone import extract_features, preprocess
from depthcore.geometry.frame import IMAGENET_MEAN, IMAGENET_STD
from depthcore.models.backbones.clip import ClipBackbone

TINY_LAYERS = {"stem": (8, 2), "layer1": (32, 4), "layer2": (64, 8), "layer3": (128, 16), "layer4": (256, 32)}
WEIGHTS = {"model": "RN50-quickgelu", "pretrained": "none", "init_seed": 0, "file": None, "sha256": None}


def extract(dataset, out, backbone, layers, key=None, batch_size=2):
    return extract_features(
        dataset, out, backbone=backbone, weights=WEIGHTS, layers=layers, key=key, batch_size=batch_size, progress=False
    )


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
    out = extract(synthetic_dataset, tmp_path / "backbone.zarr", backbone, ("stem", "layer4"), batch_size=4)
    group = zarr.open_group(str(out), mode="r")
    n = zarr.open_group(str(synthetic_dataset), mode="r")["rgb"].shape[0]
    assert sorted(group.array_keys()) == ["layer4", "stem"]
    for name in ("stem", "layer4"):
        c, stride = TINY_LAYERS[name]
        assert group[name].shape == (n, 2, c, 416 // stride, 544 // stride)
        assert group[name].dtype == np.float16 and group[name].chunks == (1, 1, *group[name].shape[2:])  # per view
        assert group.attrs["layers"][name] == {"channels": c, "stride": stride, "shape": list(group[name].shape[2:])}
    assert group.attrs["crop"] == [56, 472, 60, 604] and group.attrs["weights"] == WEIGHTS
    assert group.attrs["normalisation"]["mean"] == list(IMAGENET_MEAN) and group.attrs["n_images"] == n
    # view 1 holds the features of the mirrored image
    rgb = zarr.open_group(str(synthetic_dataset), mode="r")["rgb"][:1]
    with torch.no_grad():
        mirrored = backbone.forward_features(preprocess(rgb).flip(-1), ("layer4",))["layer4"]
    np.testing.assert_allclose(group["layer4"][0, 1].astype(np.float32), mirrored[0].numpy(), rtol=1e-2, atol=1e-3)


class _Killed(Exception):
    pass


def test_resume_after_kill_skips_finished_images_and_gives_the_same_store(synthetic_dataset, tmp_path, monkeypatch):
    layers = ("layer3", "layer4")
    full = Store(extract(synthetic_dataset, tmp_path / "full.zarr", tiny_backbone(), layers, key="k"))
    real = ClipBackbone.forward_features
    batches = []

    def counting(self, images, layers, die_on=None):
        batches.append(images.shape[0] // 2)  # an image and its mirror: computed one image at a time
        if len(batches) == die_on:
            raise _Killed
        return real(self, images, layers)

    monkeypatch.setattr(ClipBackbone, "forward_features", lambda s, i, la: counting(s, i, la, die_on=3))
    out = tmp_path / "resumed.zarr"
    with pytest.raises(_Killed):
        extract(synthetic_dataset, out, tiny_backbone(), layers, key="k")
    with pytest.raises(StoreError, match="unfinished"):
        Store(out)
    monkeypatch.setattr(ClipBackbone, "forward_features", lambda s, i, la: counting(s, i, la))
    batches.clear()
    extract(synthetic_dataset, out, tiny_backbone(), layers, key="k")
    assert sum(batches) == full.shape("layer4")[0] - 2  # the first batch (2 images) was not recomputed
    resumed = Store(out)
    assert resumed.attrs == full.attrs
    for name in layers:
        np.testing.assert_array_equal(resumed.read(name), full.read(name))

    batches.clear()  # killed again, then rerun for other inputs (another key): everything is recomputed
    monkeypatch.setattr(ClipBackbone, "forward_features", lambda s, i, la: counting(s, i, la, die_on=3))
    with pytest.raises(_Killed):
        extract(synthetic_dataset, tmp_path / "other.zarr", tiny_backbone(), layers, key="old inputs")
    monkeypatch.setattr(ClipBackbone, "forward_features", lambda s, i, la: counting(s, i, la))
    batches.clear()
    extract(synthetic_dataset, tmp_path / "other.zarr", tiny_backbone(), layers, key="new inputs")
    assert sum(batches) == full.shape("layer4")[0]
