"""The frozen CLIP backbone (shapes and strides at 416 x 544, freezing, informative random init) and the
fetch_backbone folder (manifest, local weights tracked by content, OpenAI conversion, offline failure)."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
import torch
from conftest import make_params

from depthcore.download import OFFLINE_HINT, DownloadError
from depthcore.geometry.frame import CLIP_LAYERS
from depthcore.io import sha256_of
from depthcore.models.backbones.clip import ClipError, build_clip_backbone
from depthcore.weights.clip import load_clip_backbone
from depthcore.weights.fetch_clip import fetch_clip_weights
from depthcore.weights.manifest import WeightsError

LOCAL = Path("weights/backbone")

RN50_CHANNELS = {"stem": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
RN50_STRIDES = {"stem": 2, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


def clip(**overrides):
    return make_params({f"clip.{k}": v for k, v in overrides.items()}).clip


@pytest.fixture(scope="module")
def rn50():
    return build_clip_backbone(model="RN50-quickgelu")


def test_rn50_feature_shapes_and_strides_at_416x544(rn50):
    assert {k: (v.channels, v.stride) for k, v in rn50.layer_specs.items()} == {
        k: (RN50_CHANNELS[k], RN50_STRIDES[k]) for k in CLIP_LAYERS
    }
    with torch.no_grad():
        feats = rn50.forward_features(torch.randn(1, 3, 416, 544))
    assert list(feats) == list(CLIP_LAYERS)
    for name, value in feats.items():
        assert value.shape == (1, RN50_CHANNELS[name], 416 // RN50_STRIDES[name], 544 // RN50_STRIDES[name])
    assert feats["layer4"].shape[-2:] == (13, 17)  # DepthCLIP's 13 x 17 grid


def test_frozen_and_eval(rn50):
    rn50.train()
    assert not rn50.training and not rn50.clip.visual.bn1.training
    assert not any(p.requires_grad for p in rn50.parameters())


def test_encode_text_is_normalised_and_deterministic(rn50):
    emb = rn50.encode_text(["This object is close", "This object is far"])
    assert emb.shape == (2, rn50.embed_dim) == (2, 1024)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(emb, rn50.encode_text(["This object is close", "This object is far"]))


def test_attnpool_projections_shapes(rn50):
    proj = rn50.attnpool_projections()
    assert proj["v_weight"].shape == (2048, 2048) and proj["c_weight"].shape == (1024, 2048)


def test_random_init_is_seeded_and_leaves_global_rng(rn50):
    state = torch.random.get_rng_state()
    again = build_clip_backbone(model="RN50-quickgelu")
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(again.clip.visual.conv1.weight, rn50.clip.visual.conv1.weight, rtol=0, atol=0)
    other = build_clip_backbone(model="RN50-quickgelu", init_seed=1)
    assert not torch.equal(other.clip.visual.conv1.weight, rn50.clip.visual.conv1.weight)


def test_random_init_gives_features_with_spatial_structure(rn50):
    """open_clip's own random init gives layer4 features ~1e-3 in size; the informative init gives O(1-10)
    features that follow the image: a vertical edge in the input separates the two halves of layer4."""
    image = torch.zeros(1, 3, 416, 544)
    image[..., 272:] = 2.0
    with torch.no_grad():
        feats = rn50.forward_features(image, ("layer2", "layer4"))
    for name, value in feats.items():
        assert 0.5 < value.std().item() < 100, name
    layer4 = feats["layer4"][0]
    left, right = layer4[..., :6].mean(dim=(1, 2)), layer4[..., -6:].mean(dim=(1, 2))
    assert (left - right).norm() > 0.1 * layer4.norm(dim=0).mean()


def test_load_local_checkpoint_and_mismatch_names_keys(rn50, tmp_path):
    state = {k: v.half() for k, v in rn50.clip.state_dict().items()}
    local = tmp_path / "weights/backbone"
    local.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, local / "good.pt")
    out = tmp_path / "data/weights/backbone"
    fetch_clip_weights(clip(pretrained=str(local / "good.pt")), out, local_dir=local)
    loaded = load_clip_backbone(out)
    torch.testing.assert_close(loaded.clip.visual.conv1.weight, rn50.clip.visual.conv1.weight.half().float())

    state.pop("visual.layer4.0.conv1.weight")
    state["visual.extra.weight"] = torch.zeros(1)
    with pytest.raises(ClipError, match=r"missing key\(s\) \['visual.layer4.0.conv1.weight'\].*visual.extra.weight"):
        build_clip_backbone(model="RN50-quickgelu", state_dict=state)


def test_local_weights_are_tracked_by_content(rn50, tmp_path):
    """The manifest records the file's SHA-256 and its conversion's: replacing the file's content changes the
    folder DVC hashes (and so re-runs what used it); files outside weights/backbone/ are refused."""
    local, out = tmp_path / "weights/backbone", tmp_path / "out"
    local.mkdir(parents=True)
    state = rn50.clip.state_dict()
    torch.save(state, local / "w.pt")
    cfg = clip(pretrained=str(local / "w.pt"))
    first = json.loads(fetch_clip_weights(cfg, out, local_dir=local).read_text())
    assert first["source_sha256"] == sha256_of(local / "w.pt") and first["sha256"] == sha256_of(out / "w.safetensors")
    torch.save(state | {"logit_scale": state["logit_scale"] + 1}, local / "w.pt")
    second = json.loads(fetch_clip_weights(cfg, out, local_dir=local).read_text())
    assert second["source_sha256"] == sha256_of(local / "w.pt") and second["sha256"] == sha256_of(out / "w.safetensors")
    assert second["sha256"] != first["sha256"] and sorted(p.name for p in out.iterdir()) == [
        "w.safetensors",
        "weights.json",
    ]
    (tmp_path / "elsewhere.pt").write_bytes(b"x")
    with pytest.raises(WeightsError, match="lies outside .*weights/backbone/"):
        fetch_clip_weights(clip(pretrained=str(tmp_path / "elsewhere.pt")), out, local_dir=local)


def test_unknown_model_lists_resnets():
    with pytest.raises(ClipError, match=r"ViT-B-32.*RN50-quickgelu"):
        build_clip_backbone(model="ViT-B-32")


def test_bad_images_rejected(rn50):
    with pytest.raises(ValueError, match="multiples of 32"):
        rn50.forward_features(torch.zeros(1, 3, 100, 544))
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        rn50.forward_features(torch.zeros(3, 416, 544))


def test_fetch_none_writes_a_manifest_and_removes_old_files(tmp_path):
    out = tmp_path / "w"
    out.mkdir()
    (out / "RN50-quickgelu-openai.safetensors").write_bytes(b"weights of an earlier setting")
    manifest = fetch_clip_weights(clip(pretrained="none", init_seed=3), out, local_dir=LOCAL)
    assert sorted(p.name for p in out.iterdir()) == ["weights.json"]  # old files do not pile up
    assert json.loads(manifest.read_text()) == {
        "model": "RN50-quickgelu",
        "pretrained": "none",
        "init_seed": 3,
        "file": None,
        "sha256": None,
    }
    torch.testing.assert_close(
        load_clip_backbone(out).clip.visual.conv1.weight,
        build_clip_backbone(model="RN50-quickgelu", init_seed=3).clip.visual.conv1.weight,
    )
    with pytest.raises(WeightsError, match="missing.pt. is not a known tag"):
        fetch_clip_weights(clip(pretrained="weights/backbone/missing.pt"), out, local_dir=LOCAL)
    with pytest.raises(Exception, match="run `dvc repro fetch_backbone`"):
        load_clip_backbone(tmp_path / "nothing")


def test_fetch_openai_offline_fails_fast(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("depthcore.download.urllib.request.urlopen", offline)
    with pytest.raises(DownloadError) as info:
        fetch_clip_weights(clip(pretrained="openai"), tmp_path, local_dir=LOCAL)
    assert "openaipublic" in str(info.value) and OFFLINE_HINT in str(info.value)
