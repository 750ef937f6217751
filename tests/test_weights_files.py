"""The weights files users really download load on every route the docs name (a release by tag, the file placed
under weights/backbone/, a rerun, a kept download), through one idempotent conversion per backbone, and give the
features of a direct forward of the same weights; wrong files are refused by the fetch stage itself.

The files are stand-ins in each release's real layout (tests/published_weights.py), random weights at full size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import os
import pickle
import threading
import types
import warnings
import zipfile

import pytest
import torch
from conftest import make_params
from published_weights import (
    dinov2_release,
    open_clip_bin,
    openai_archive,
    sam_release,
    timm_clip_file,
    timm_samvit_file,
)

from depthcore.models.backbones.clip import build_clip_backbone, create_clip_model
from depthcore.models.backbones.zoo.registry import BACKBONES, build_backbone
from depthcore.weights import fetch_clip as fetch_clip_module
from depthcore.weights.backbone import fetch_backbone_weights, load_backbone, selected_settings
from depthcore.weights.formats import TORCHSCRIPT, WeightsFileError, read_torchscript_tensors, read_weights_file
from depthcore.weights.manifest import WeightsError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_features(backbone, size=(64, 64), layers=None):
    """Features of a seeded random input (already normalised) of ``size``."""
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        return backbone.forward_features(x, layers or backbone.layers)


def assert_same_features(a, b, size, layers=None):
    fa, fb = tiny_features(a, size, layers), tiny_features(b, size, layers)
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)


def fetch(settings: dict, tmp_path, local):
    out, downloads = tmp_path / "weights", tmp_path / "downloads"
    manifest = fetch_backbone_weights(settings, out, local_dir=local, downloads=downloads, progress=False)
    return out, json.loads(manifest.read_text())


def zoo_settings(name: str, pretrained: str, adapter: str = "linear_probe") -> dict:
    overrides = {"backbone": name, f"backbones.{name}.pretrained": pretrained, "adapter": adapter}
    if name == "sam_vitb":
        overrides["adapters.linear_probe.class_token"] = False
    return selected_settings(make_params(overrides))


# ------------------------------------------------------------------------------------------ the formats
def test_a_torchscript_archive_is_read_as_its_state_dict_without_running_code(tmp_path):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
            self.scale = torch.nn.Parameter(torch.arange(4.0).half())

        def forward(self, x):
            return self.block(x) * self.scale.float()

    path = tmp_path / "net.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        torch.jit.save(torch.jit.trace(Net().eval(), torch.rand(2, 3)), str(path))
        reference = torch.jit.load(str(path)).state_dict()  # the independent route: torch's own loader
    tensors = read_torchscript_tensors(path)
    assert tensors.keys() == reference.keys() and all(torch.equal(tensors[k], reference[k]) for k in reference)
    assert read_weights_file(path).format == TORCHSCRIPT and tensors["scale"].dtype == torch.float16

    evil = tmp_path / "evil.pt"  # an archive whose data.pkl needs a global beyond tensors and module records
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("evil/constants.pkl", pickle.dumps(()))
        archive.writestr("evil/data.pkl", pickle.dumps(os.system, protocol=2))
    with pytest.raises(WeightsFileError, match=r"needs (posix|os|nt)\.system, which depthcore does not run"):
        read_weights_file(evil)
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(WeightsFileError, match="cut.pt cannot be read"):
        read_weights_file(truncated)


# ------------------------------------------------------------------------------------------ CLIP
@pytest.fixture(scope="module")
def rn50_archive(tmp_path_factory):
    """OpenAI's RN50.pt stand-in under weights/backbone/, and the state dict it holds."""
    local = tmp_path_factory.mktemp("rn50") / "weights" / "backbone"
    local.mkdir(parents=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        state = openai_archive(create_clip_model("RN50-quickgelu"), local / "RN50.pt")
    return local, state


def test_openai_rn50_archive_loads_by_tag_and_as_a_local_file_to_the_same_weights(rn50_archive, tmp_path, monkeypatch):
    local, state = rn50_archive
    reference = build_clip_backbone(model="RN50-quickgelu", state_dict={
        k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")
    })  # fmt: skip
    calls = []

    def download(remote, folder, progress=True):  # the release route: the same bytes as downloaded
        calls.append(remote)
        target = folder / remote.filename
        target.write_bytes((local / "RN50.pt").read_bytes())
        return target

    monkeypatch.setattr(fetch_clip_module, "fetch", download)
    tagged = selected_settings(make_params({"clip.pretrained": "openai"}))
    out_tag, by_tag = fetch(tagged, tmp_path / "tag", local)
    assert by_tag["file"] == "RN50-quickgelu-openai.safetensors" and by_tag["source_format"] == TORCHSCRIPT
    assert sorted(p.name for p in out_tag.iterdir()) == ["RN50-quickgelu-openai.safetensors", "weights.json"]
    assert len(calls[0].sha256) == 64 and calls[0].sha256 in calls[0].url  # the SHA-256 OpenAI's URL embeds
    _, again = fetch(tagged, tmp_path / "tag", local)  # a rerun: verified, not fetched again
    assert again == by_tag and len(calls) == 1

    placed = selected_settings(make_params({"clip.pretrained": str(local / "RN50.pt")}))
    out_local, by_file = fetch(placed, tmp_path / "local", local)
    assert by_file["sha256"] == by_tag["sha256"] and by_file["source_sha256"] == by_tag["source_sha256"]
    for out in (out_tag, out_local):
        loaded = load_backbone(out)
        assert_same_features(loaded, reference, (64, 64), layers=("stem", "layer4"))


def test_vit_b16_archive_and_open_clip_file_load_and_timm_keyed_files_are_refused_in_the_fetch_stage(tmp_path, caplog):
    local = tmp_path / "weights" / "backbone"
    local.mkdir(parents=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(6)
        state = openai_archive(create_clip_model("ViT-B-16-quickgelu"), local / "ViT-B-16.pt")
    weights = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    open_clip_bin(weights, local / "open_clip_pytorch_model.bin")
    reference = build_backbone("clip_vitb16", cfg=types.SimpleNamespace(init_seed=0), state_dict=weights)
    shas = set()
    for name in ("ViT-B-16.pt", "open_clip_pytorch_model.bin"):
        with caplog.at_level("WARNING"):
            out, manifest = fetch(zoo_settings("clip_vitb16", str(local / name)), tmp_path / name, local)
            loaded = load_backbone(out)
        assert "No pretrained weights loaded" not in caplog.text  # open_clip's false warning is gone
        assert_same_features(loaded, reference, (32, 48), layers=("block2", "dense"))
        shas.add(manifest["sha256"])
    assert len(shas) == 1  # both files convert to the same bytes

    timm_clip_file(local / "model.safetensors")
    with pytest.raises(WeightsError) as refused:
        fetch(zoo_settings("clip_vitb16", str(local / "model.safetensors")), tmp_path / "timm", local)
    message = str(refused.value)
    assert "model.safetensors is a safetensors file of" in message and "keys are timm's" in message
    assert "open_clip_model.safetensors or open_clip_pytorch_model.bin" in message and "ViT-B-16.pt" in message


# ------------------------------------------------------------------------------------------ SAM
class _Release(http.server.BaseHTTPRequestHandler):
    """Serves ``server.payload`` at any path (a GET counted in ``server.gets``)."""

    def do_GET(self):  # noqa: N802
        self.server.gets += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.payload)))
        self.end_headers()
        self.wfile.write(self.server.payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def sam(tmp_path_factory):
    """The zoo's SAM ViT-B (seed 0), Meta's release stand-in of its weights and a local server of it."""
    from segment_anything import sam_model_registry

    folder = tmp_path_factory.mktemp("sam")
    model = build_backbone("sam_vitb", cfg=types.SimpleNamespace(init_seed=0))
    encoder = model.encoder.state_dict()
    saved = sam_release(encoder, folder / "sam_vit_b_01ec64.pth")
    with torch.device("meta"):
        official = sam_model_registry["vit_b"]().state_dict()  # the layout of Meta's file, by the official code
    assert {k: tuple(v.shape) for k, v in saved.items()} == {k: tuple(v.shape) for k, v in official.items()}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Release)
    server.payload, server.gets = (folder / "sam_vit_b_01ec64.pth").read_bytes(), 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield types.SimpleNamespace(model=model, encoder=encoder, folder=folder, server=server)
    server.shutdown()


@pytest.fixture
def sam_official(sam, monkeypatch):
    """The sam_vitb 'official' release pointed at the local server, its SHA-256 the stand-in's."""
    plugin = BACKBONES.get("sam_vitb")
    url = f"http://127.0.0.1:{sam.server.server_address[1]}/sam_vit_b_01ec64.pth"
    release = dataclasses.replace(
        plugin.spec.releases[0], url=url, sha256=hashlib.sha256(sam.server.payload).hexdigest()
    )
    spec = dataclasses.replace(plugin.spec, releases=(release,))
    monkeypatch.setitem(BACKBONES._plugins, "sam_vitb", dataclasses.replace(plugin, spec=spec))
    return sam


def test_sam_official_loads_end_to_end_and_a_wrongly_converted_kept_download_is_redone(sam_official, tmp_path):
    sam, local = sam_official, tmp_path / "local"
    settings = zoo_settings("sam_vitb", "official")
    gets = sam.server.gets
    out, manifest = fetch(settings, tmp_path, local)
    assert sam.server.gets == gets + 1 and manifest["source_format"] == "torch"
    assert sorted(p.name for p in out.iterdir()) == ["sam_vitb-official.safetensors", "weights.json"]
    assert_same_features(load_backbone(out), sam.model, (96, 64), layers=("block1", "neck"))

    # an older version kept a file that does not load (here: the prompt encoder alone): detected and redone
    downloads = tmp_path / "downloads"
    index = json.loads((downloads / "index.json").read_text())
    kept = downloads / index[next(iter(index))]["file"]
    from safetensors.torch import save_file

    save_file({"prompt_encoder.point_embeddings.0.weight": torch.zeros(1, 256)}, str(kept))
    wrong = hashlib.sha256(kept.read_bytes()).hexdigest()
    index[next(iter(index))]["sha256"] = index[next(iter(index))]["manifest"]["sha256"] = wrong
    (downloads / "index.json").write_text(json.dumps(index))
    (out / manifest["file"]).unlink()
    out, again = fetch(settings, tmp_path, local)
    assert sam.server.gets == gets + 2 and again["sha256"] == manifest["sha256"]
    assert_same_features(load_backbone(out), sam.model, (96, 64), layers=("block1",))


def test_sam_files_placed_by_hand_load_and_another_architecture_is_refused(sam, tmp_path):
    local = tmp_path / "weights" / "backbone"
    local.mkdir(parents=True)
    (local / "sam_vit_b_01ec64.pth").write_bytes(sam.server.payload)
    timm_samvit_file(sam.encoder, local / "model.safetensors")
    shas = set()
    for name in ("sam_vit_b_01ec64.pth", "model.safetensors"):
        out, manifest = fetch(zoo_settings("sam_vitb", str(local / name)), tmp_path / name, local)
        assert_same_features(load_backbone(out), sam.model, (96, 64), layers=("block2",))
        shas.add(manifest["sha256"])
        out, rerun = fetch(zoo_settings("sam_vitb", str(local / name)), tmp_path / name, local)
        assert rerun == manifest
    assert len(shas) == 1

    dino = build_backbone("dinov2_vits14", cfg=types.SimpleNamespace(init_seed=0))
    dinov2_release(dino.vit.state_dict(), local / "dinov2_vits14_pretrain.pth")
    with pytest.raises(WeightsError) as refused:
        fetch(zoo_settings("sam_vitb", str(local / "dinov2_vits14_pretrain.pth")), tmp_path / "dino", local)
    message = str(refused.value)
    assert "dinov2_vits14_pretrain.pth is a torch.save file of" in message and "cls_token" in message
    assert "unexpected key(s)" in message and "sam_vit_b_01ec64.pth" in message
    cut = local / "cut.pth"
    cut.write_bytes(sam.server.payload[: len(sam.server.payload) // 2])
    with pytest.raises(WeightsError, match="(?s)cut.pth cannot be read as a torch.save file .* truncated"):
        fetch(zoo_settings("sam_vitb", str(cut)), tmp_path / "cut", local)


# ------------------------------------------------------------------------------------------ DINOv2
def test_meta_dinov2_release_loads_as_a_local_file(tmp_path):
    local = tmp_path / "weights" / "backbone"
    local.mkdir(parents=True)
    reference = build_backbone("dinov2_vits14", cfg=types.SimpleNamespace(init_seed=4))
    dinov2_release(reference.vit.state_dict(), local / "dinov2_vits14_pretrain.pth")
    out, manifest = fetch(zoo_settings("dinov2_vits14", str(local / "dinov2_vits14_pretrain.pth")), tmp_path, local)
    assert manifest["file"] == "dinov2_vits14_pretrain.safetensors"
    assert_same_features(load_backbone(out), reference, (28, 42), layers=("block3", "block12"))
