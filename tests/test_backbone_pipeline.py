"""The selected backbone through the pipeline: what backbone.json records, its weights fetched (and kept for a
switch back), its features cached, the zero-shot head on a ViT CLIP and on a backbone without text, and the
adapters that do not fit a backbone refused before any work."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading

import numpy as np
import pytest
import torch
from conftest import make_params

from depthcore.artifacts import has_head, load_head
from depthcore.config.paths import Paths
from depthcore.data.store import Store
from depthcore.download import DownloadError
from depthcore.errors import ConfigError
from depthcore.evaluation.evaluate import zeroshot_report
from depthcore.features.backbone import cache_features, crop_rgb
from depthcore.features.head import write_head
from depthcore.features.zeroshot import run_zeroshot
from depthcore.models.heads.depthclip import LOGIT_SCALE, DepthCLIPHead
from depthcore.pipeline.build import build_inputs
from depthcore.weights import backbone as backbone_weights
from depthcore.weights.backbone import (
    fetch_backbone_weights,
    load_backbone,
    selected_settings,
    write_selected,
)


# ------------------------------------------------------------------------------------------- backbone.json
def test_backbone_json_holds_the_selected_backbone_alone():
    base = selected_settings(make_params())
    other = selected_settings(
        make_params({"backbones.dinov2_vits14.layers": ["block12"], "backbones.sam_vitb.init_seed": 4})
    )
    assert base == other  # another backbone's settings change nothing the features depend on
    assert base["backbone"] == "clip_rn50" and base["layers"] == ["layer2", "layer3", "layer4"]
    assert base["model"] == "RN50-quickgelu" and base["pretrained"] == "none"
    assert selected_settings(make_params({"clip.cache_layers": ["layer2", "layer3", "layer4", "layer1"]})) != base

    dino = selected_settings(make_params({"backbone": "dinov2_vits14", "adapter": "dpt_probe"}))
    assert dino["backbone"] == "dinov2_vits14" and dino["layers"] == ["block3", "block6", "block9", "block12"]
    assert "depthcore/models/backbones/zoo/dinov2.py" in dino["code"]
    assert "depthcore/models/backbones/zoo/sam_vitb.py" not in dino["code"]  # its code re-runs nothing of DINOv2's
    assert all(len(digest) == 64 for digest in dino["code"].values())


# ------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"backbone": "dinov2_vits14"},  # the default adapter, the MSA, reads ResNet stages
            r"reads the layer\(s\) \['layer2', 'layer3', 'layer4'\], which backbone 'dinov2_vits14' does not have"
            r".*adapter that takes any backbone \(\['dpt_probe', 'eigen', 'linear_probe'\]",
        ),
        ({"backbone": "sam_vitb", "adapter": "clip_adapter"}, r"'sam_vitb' does not have"),
        (
            {"backbone": "sam_vitb", "adapter": "linear_probe"},
            r"reads class tokens, which backbone 'sam_vitb' does not have: set adapters.linear_probe.class_token",
        ),
        (
            {"backbone": "dinov2_vitb14", "adapter": "linear_probe", "adapters.linear_probe.layers": ["block11"]},
            r"reads the layer\(s\) \['block11'\], which 'backbones.dinov2_vitb14.layers' .* does not cache",
        ),
        ({"backbone": "dinov2_vitb14", "adapter": "coarse_refine"}, r"needs a text tower; backbone 'dinov2_vitb14'"),
        ({"backbone": "clip_vitb16", "adapter": "msa"}, r"'clip_vitb16' does not have"),
        ({"backbone": "vit_h"}, r"params 'backbone': unknown value 'vit_h'; valid values are \['clip_rn50'"),
        ({"backbones.sam_vitb.layers": ["block13"]}, r"unknown layer\(s\) \['block13'\] of backbone 'sam_vitb'"),
    ],
)
def test_combinations_that_do_not_fit_are_refused_before_any_work(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_params(overrides)


def test_the_probes_and_eigen_take_every_backbone():
    for name in ("clip_rn50", "clip_vitb16", "dinov2_vits14", "dinov2_vitb14", "sam_vitb"):
        for adapter in ("linear_probe", "dpt_probe", "eigen"):
            overrides = {"backbone": name, "adapter": adapter}
            if name == "clip_rn50" and adapter != "eigen":
                overrides |= {"clip.cache_layers": ["layer1", "layer2", "layer3", "layer4"]}
                overrides[f"adapters.{adapter}.layers"] = (
                    ["layer4"]
                    if adapter == "linear_probe"
                    else [
                        "layer1",
                        "layer2",
                        "layer3",
                        "layer4",
                    ]
                )
            if name in ("clip_rn50", "sam_vitb") and adapter != "eigen":
                overrides[f"adapters.{adapter}.class_token"] = False
            make_params(overrides)


# ------------------------------------------------------------------------------------------- weights
class _Release(http.server.BaseHTTPRequestHandler):
    """Serves one file at /model.safetensors, announcing ``announced`` as its SHA-256 (X-Linked-Etag)."""

    def _headers(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.payload)))
        self.send_header("X-Linked-Etag", f'"{self.server.announced}"')
        self.end_headers()

    def do_HEAD(self):  # noqa: N802
        self.server.requests.append("HEAD")
        self._headers()

    def do_GET(self):  # noqa: N802
        self.server.requests.append("GET")
        self._headers()
        self.wfile.write(self.server.payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def release_server(monkeypatch):
    """A local server of a DINOv2 ViT-S/14 release (random weights), set as the backbone's official release."""
    import dataclasses

    from safetensors.torch import save

    from depthcore.models.backbones.zoo.registry import BACKBONES, build_backbone

    model = build_backbone("dinov2_vits14", cfg=make_params().backbones.dinov2_vits14)
    state = {k.removeprefix("vit."): v.contiguous() for k, v in model.state_dict().items()}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Release)
    server.payload = save(state)
    server.announced = hashlib.sha256(server.payload).hexdigest()
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/model.safetensors"
    plugin = BACKBONES.get("dinov2_vits14")
    release = dataclasses.replace(plugin.spec.releases[0], url=url)
    spec = dataclasses.replace(plugin.spec, releases=(release,))
    monkeypatch.setitem(BACKBONES._plugins, "dinov2_vits14", dataclasses.replace(plugin, spec=spec))
    yield server
    server.shutdown()


def test_a_release_is_verified_against_the_announced_hash_and_kept_for_a_switch_back(release_server, tmp_path):
    out, downloads, local = tmp_path / "weights", tmp_path / "downloads", tmp_path / "local"
    official = selected_settings(
        make_params(
            {"backbone": "dinov2_vits14", "backbones.dinov2_vits14.pretrained": "official", "adapter": "dpt_probe"}
        )
    )
    manifest = json.loads(
        fetch_backbone_weights(official, out, local_dir=local, downloads=downloads, progress=False).read_text()
    )
    assert release_server.requests == ["HEAD", "GET"]
    assert manifest["backbone"] == "dinov2_vits14" and manifest["sha256"] == release_server.announced
    loaded = load_backbone(out)
    assert loaded.name == "dinov2_vits14"

    random = selected_settings(make_params({"backbone": "dinov2_vits14", "adapter": "dpt_probe"}))
    fetch_backbone_weights(random, out, local_dir=local, downloads=downloads, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["weights.json"]  # the folder holds the weights in use alone

    release_server.shutdown()  # a switch back downloads nothing: the kept release is linked back
    again = json.loads(
        fetch_backbone_weights(official, out, local_dir=local, downloads=downloads, progress=False).read_text()
    )
    assert again == manifest and release_server.requests == ["HEAD", "GET"]
    assert hashlib.sha256((out / manifest["file"]).read_bytes()).hexdigest() == release_server.announced


def test_a_file_that_is_not_the_announced_one_is_refused_and_not_kept(release_server, tmp_path):
    release_server.announced = "0" * 64
    official = selected_settings(
        make_params(
            {"backbone": "dinov2_vits14", "backbones.dinov2_vits14.pretrained": "official", "adapter": "dpt_probe"}
        )
    )
    with pytest.raises(DownloadError, match="does not match the pinned value 0000"):
        fetch_backbone_weights(official, tmp_path / "w", local_dir=tmp_path, downloads=tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()


def test_the_announced_hash_is_read_before_any_redirect(release_server):
    url = backbone_weights.backbone_spec("dinov2_vits14").releases[0].url
    assert backbone_weights.announced_sha256(url) == release_server.announced


# ------------------------------------------------------------------------------------------- features
@pytest.fixture(scope="module")
def dino_pipeline(tmp_path_factory):
    """The offline inputs with DINOv2 ViT-S/14 (random weights) as the backbone, on 6 rendered images."""
    params = make_params({"backbone": "dinov2_vits14", "adapter": "dpt_probe"})
    return params, build_inputs(params, Paths().under(tmp_path_factory.mktemp("dino")))


def test_cached_features_are_the_backbone_forward_of_the_crop(dino_pipeline):
    params, paths = dino_pipeline
    store = Store(paths.features)
    attrs = store.attrs
    assert attrs["backbone"] == "dinov2_vits14" and attrs["input_size"] == [416, 544]
    assert attrs["network_input"] == [420, 546] and attrs["class_tokens"] == ["block3", "block6", "block9", "block12"]
    assert attrs["layers"]["block12"]["shape"] == [384, 30, 39]
    assert store.shape("block12") == (6, 2, 384, 30, 39) and store.shape("block12_cls") == (6, 2, 384)
    # an independent route: timm's own model (raw block outputs, as DINOv2's depth heads read them), fed the crop
    # resized to 420 x 546 and normalised by hand
    import timm

    backbone = load_backbone(paths.backbone_weights)
    vit = next(m for m in backbone.modules() if isinstance(m, timm.models.VisionTransformer))
    rgb = Store(paths.dataset).read("rgb", slice(1, 2))
    crop = torch.from_numpy(rgb[:, 56:472, 60:604]).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(crop, size=(420, 546), mode="bilinear", align_corners=False)
    x = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        final = vit.forward_intermediates(
            x.flip(-1), indices=[11], norm=False, output_fmt="NCHW", return_prefix_tokens=True
        )[1]
    patches, prefix = final[0]
    mirrored = store.read("block12", 1)[1].astype(np.float32)
    np.testing.assert_allclose(mirrored, patches[0].numpy(), atol=2e-2, rtol=2e-3)  # float16 storage
    np.testing.assert_allclose(
        store.read("block12_cls", 1)[1].astype(np.float32), prefix[0, 0].numpy(), atol=2e-2, rtol=2e-3
    )
    assert crop_rgb(rgb).shape == (1, 3, 416, 544)


def test_a_backbone_without_text_has_no_head_no_zero_shot_and_reports_the_baseline(dino_pipeline):
    params, paths = dino_pipeline
    assert not has_head(paths.clip_head)
    with pytest.raises(Exception, match="'dinov2_vits14' has no text tower"):
        load_head(paths.clip_head)
    zeroshot = Store(paths.zeroshot)
    assert zeroshot.attrs["predictor"] is None and "depth" not in zeroshot.group
    metrics = zeroshot_report(params, paths)
    assert set(metrics) == {"constant_mean"} and json.loads(paths.zeroshot_metrics.read_text()) == metrics
    with pytest.raises(Exception, match="no CLIP ResNet stem"):
        from depthcore.artifacts import load_shallow

        load_shallow(paths.clip_shallow)


def test_the_vit_clip_zero_shot_head_by_hand():
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    bins = torch.tensor([1.0, 2.0, 4.0])
    head = DepthCLIPHead(text_embeddings=text, bins=bins, temperature=0.1, dense="embedded")
    dense = torch.randn(1, 8, 2, 2)
    got = head(dense)
    v = dense[0, :, 1, 0].numpy()
    cos = (text.numpy() @ (v / np.linalg.norm(v))) * LOGIT_SCALE / 0.1
    p = np.exp(cos - cos.max()) / np.exp(cos - cos.max()).sum()
    assert float(got[0, 0, 1, 0]) == pytest.approx(float(p @ bins.numpy()), rel=1e-5)


def test_the_vit_clip_head_and_zero_shot_read_the_cached_dense_layer(tmp_path):
    two_rooms = {"data.synthetic.images": 2, "data.synthetic.views_per_room": 1, "data.val_fraction": 0.0}
    params = make_params({"backbone": "clip_vitb16", "adapter": "eigen", "train.select": "last", **two_rooms})
    paths = Paths().under(tmp_path)
    from depthcore.data.prepare import fetch_data, prepare_dataset

    fetch_data(params.data, paths.raw, key=None, progress=False)
    prepare_dataset(params.data.source, paths.raw, paths.dataset, key=None, progress=False)
    selected = write_selected(params, paths.backbone_settings)
    fetch_backbone_weights(
        selected,
        paths.backbone_weights,
        local_dir=paths.local_backbone_weights,
        downloads=paths.weights_downloads,
        progress=False,
    )
    cache_features(
        paths.backbone_weights, paths.dataset, paths.features, paths.clip_shallow, layers=("block12",), key=None
    )
    store = Store(paths.features)
    assert store.shape("dense") == (2, 2, 512, 26, 34) and store.shape("block12_cls") == (2, 2, 768)
    write_head(paths.backbone_weights, params.depthclip, paths.clip_head)
    head = load_head(paths.clip_head)
    assert head.dense == "embedded" and head.text.shape == (7, 512)
    run_zeroshot(paths, key=None, batch_size=2, progress=False)
    depth = Store(paths.zeroshot).read("depth", 0)
    crop = depth[56:472, 60:604]
    assert crop.min() >= 1.0 and crop.max() <= 3.0 and depth[:56].max() == 0  # within the bins, pasted in the crop


def test_a_probe_on_dinov2_predicted_live_equals_the_evaluate_stage(dino_pipeline, tmp_path):
    import dataclasses

    from depthcore.data.splits import split_indices
    from depthcore.evaluation.evaluate import evaluate_checkpoint
    from depthcore.inference.live import LivePredictor, PredictError
    from depthcore.training.run import train_model

    _, base = dino_pipeline
    paths = dataclasses.replace(
        base,
        **{f: tmp_path / name for f, name in (("model", "m.safetensors"), ("train_metrics", "t.json"),
           ("train_curves", "c.csv"), ("predictions", "p.zarr"), ("eval_metrics", "e.json"),
           ("eval_per_image", "e.csv"), ("eval_figure", "e.png"))},
    )  # fmt: skip
    short = {"train.preset": "custom", "train.epochs": 1, "train.batch_size": 2, "train.select": "last"}
    params = make_params({"backbone": "dinov2_vits14", "adapter": "linear_probe", **short})
    train_model(params, paths, resume_key=None, progress=False)
    evaluate_checkpoint(params, paths, progress=False)
    live = LivePredictor.from_checkpoint(
        paths.model, backbone_weights=paths.backbone_weights, head=paths.clip_head, sam_weights=paths.sam_weights,
        device=torch.device("cpu"),
    )  # fmt: skip
    assert set(live.keys) == {"clip_block12", "clip_block12_cls"}
    test = split_indices(Store(paths.dataset).read("split"), "test")
    frames = Store(paths.dataset).read("rgb", test)
    stored = Store(paths.predictions).read("depth", test)[:, 56:472, 60:604]
    np.testing.assert_allclose(live.predict(frames)[:, 0].numpy(), stored, atol=1e-5, rtol=0)
    with pytest.raises(PredictError, match="'dinov2_vits14' has no text tower"):
        LivePredictor.zeroshot(
            backbone_weights=paths.backbone_weights, head=paths.clip_head, device=torch.device("cpu")
        )
