"""The frozen CLIP backbone: shapes and strides at 416 x 544, freezing, weights loading and fetching."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from depthcore.config import CLIP_LAYERS, ClipConfig
from depthcore.download import OFFLINE_HINT, DownloadError
from depthcore.models import clip_backbone
from depthcore.models.clip_backbone import ClipError, build_clip_backbone, fetch_clip_weights

RN50_CHANNELS = {"stem": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
RN50_STRIDES = {"stem": 2, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


@pytest.fixture(scope="module")
def rn50(tmp_path_factory):
    return build_clip_backbone(cfg=ClipConfig(pretrained="none"), weights_dir=tmp_path_factory.mktemp("w"))


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


def test_random_init_is_seeded_and_leaves_global_rng(rn50, tmp_path):
    state = torch.random.get_rng_state()
    again = build_clip_backbone(cfg=ClipConfig(pretrained="none"), weights_dir=tmp_path)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(again.clip.visual.conv1.weight, rn50.clip.visual.conv1.weight, rtol=0, atol=0)
    other = build_clip_backbone(cfg=ClipConfig(pretrained="none", init_seed=1), weights_dir=tmp_path)
    assert not torch.equal(other.clip.visual.conv1.weight, rn50.clip.visual.conv1.weight)


def test_load_local_checkpoint_and_mismatch_names_keys(rn50, tmp_path):
    state = {k: v.half() for k, v in rn50.clip.state_dict().items()}
    good = tmp_path / "good.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, good)
    loaded = build_clip_backbone(cfg=ClipConfig(pretrained=str(good), init_seed=5), weights_dir=tmp_path)
    torch.testing.assert_close(loaded.clip.visual.conv1.weight, rn50.clip.visual.conv1.weight.half().float())

    state.pop("visual.layer4.0.conv1.weight")
    state["visual.extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(ClipError, match=r"missing key\(s\) \['visual.layer4.0.conv1.weight'\].*visual.extra.weight"):
        build_clip_backbone(cfg=ClipConfig(pretrained=str(bad)), weights_dir=tmp_path)


def test_unknown_model_lists_resnets(tmp_path):
    with pytest.raises(ClipError, match=r"ViT-B-32.*RN50-quickgelu"):
        build_clip_backbone(cfg=ClipConfig(model="ViT-B-32", pretrained="none"), weights_dir=tmp_path)


def test_bad_images_rejected(rn50):
    with pytest.raises(ValueError, match="multiples of 32"):
        rn50.forward_features(torch.zeros(1, 3, 100, 544))
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        rn50.forward_features(torch.zeros(3, 416, 544))


def test_fetch_none_and_path(tmp_path):
    assert fetch_clip_weights(ClipConfig(pretrained="none"), tmp_path / "w") is None
    assert (tmp_path / "w").is_dir()
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"x")
    assert fetch_clip_weights(ClipConfig(pretrained=str(ckpt)), tmp_path) == ckpt
    with pytest.raises(ClipError, match="neither 'openai', 'none' nor an existing"):
        fetch_clip_weights(ClipConfig(pretrained=str(tmp_path / "missing.pt")), tmp_path)
    with pytest.raises(ClipError, match="fetch_weights"):
        build_clip_backbone(cfg=ClipConfig(pretrained="openai"), weights_dir=tmp_path)


def test_fetch_openai_offline_fails_fast(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("depthcore.download.urllib.request.urlopen", offline)
    with pytest.raises(DownloadError) as info:
        fetch_clip_weights(ClipConfig(pretrained="openai"), tmp_path)
    assert "openaipublic" in str(info.value) and OFFLINE_HINT in str(info.value)


class _Archive(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.arange(4.0))
        self.register_buffer("input_resolution", torch.tensor(224))


def test_fetch_openai_converts_archive_to_plain_state_dict(tmp_path, monkeypatch):
    archive = tmp_path / "RN50.pt"
    torch.jit.save(torch.jit.script(_Archive()), str(archive))
    calls = []

    def fake_fetch(remote, directory, progress=True):
        calls.append(remote)
        return archive

    monkeypatch.setattr(clip_backbone, "fetch", fake_fetch)
    cfg = ClipConfig(pretrained="openai")
    out = fetch_clip_weights(cfg, tmp_path)
    assert out == tmp_path / "RN50-quickgelu-openai.pt" and not archive.exists()
    assert len(calls[0].sha256) == 64 and calls[0].sha256 in calls[0].url
    state = torch.load(out, weights_only=True)
    assert list(state) == ["w"] and torch.equal(state["w"], torch.arange(4.0))
    assert clip_backbone.weights_sha256(cfg, tmp_path) == clip_backbone.sha256_of(out)
    assert fetch_clip_weights(cfg, tmp_path) == out and len(calls) == 1  # never fetched again
