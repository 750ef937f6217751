"""The 2025 backbones of the zoo: DINOv3 ViT-S/16, ViT-B/16, ViT-L/16 (timm Eva) and C-RADIOv3 ViT-B/16 (timm
NaFlexVit) on tiny CPU inputs: layer shapes against layer_specs, the canonical 26 x 34 grid by arithmetic, seeded
and informative random init, agreement with an independent forward of timm's model (hooks on its blocks, its own
final norm, RADIO's position-embedding rule written out), strict loading, each published file layout converting to
the same state dict as timm's own converter makes (idempotently), and final_norm carried from the settings to the
loaded backbone.

ViT-S, ViT-B and RADIO are built once per module; ViT-L only on the meta device (its geometry and key layout).
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import yaml
from conftest import block_outputs
from published_weights import dinov3_release, radio_release
from pydantic import ValidationError

from depthcore.geometry.frame import IMAGENET_MEAN, IMAGENET_STD
from depthcore.models.backbones.zoo import _vit, cradiov3, dinov3
from depthcore.models.backbones.zoo.base import CLS_SUFFIX, CROP_SIZE, BackboneError, check_state_dict
from depthcore.models.backbones.zoo.registry import BACKBONES, backbone_facts, backbone_spec, build_backbone
from depthcore.weights.manifest import WeightsError

BUILT = ("dinov3_vits16", "dinov3_vitb16", "cradiov3_vitb16")
NAMES = (*BUILT, "dinov3_vitl16")
WIDTH = {"dinov3_vits16": 384, "dinov3_vitb16": 768, "dinov3_vitl16": 1024, "cradiov3_vitb16": 768}
DEPTH = {"dinov3_vits16": 12, "dinov3_vitb16": 12, "dinov3_vitl16": 24, "cradiov3_vitb16": 12}
TIMM_MODEL = {
    "dinov3_vits16": "vit_small_patch16_dinov3.lvd1689m",
    "dinov3_vitb16": "vit_base_patch16_dinov3.lvd1689m",
    "dinov3_vitl16": "vit_large_patch16_dinov3.lvd1689m",
    "cradiov3_vitb16": "naflexvit_base_patch16_radio_v3.c_radio",
}
TINY = (32, 48)  # a 2 x 3 grid of 16-pixel patches
PREFIX = {
    "dinov3": 5,
    "cradiov3": 8,
}  # class token + registers: DINOv3 1 + 4 storage, C-RADIOv3 1 + 7 summary/registers

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def settings(name: str, seed: int = 0, **extra):
    fields = {"pretrained": "none", "init_seed": seed, "layers": ("block1",)} | extra
    if name.startswith("dinov3") and "final_norm" not in fields:
        fields["final_norm"] = True
    return BACKBONES.get(name).config(**fields)


def build(name: str, seed: int = 0, state_dict=None, **extra):
    return build_backbone(name, cfg=settings(name, seed, **extra), state_dict=state_dict)


@pytest.fixture(scope="module")
def zoo():
    return {name: build(name) for name in BUILT}


def meta_vitl():
    with torch.device("meta"):
        model = timm.create_model("vit_large_patch16_dinov3", pretrained=False, dynamic_img_size=True)
    return _vit.TimmViTBackbone(model, name="dinov3_vitl16", final_norm=True)


def images(backbone, size=TINY) -> torch.Tensor:
    """2 x 3 x H x W normalised input: a smooth random texture, and a vertical edge over a ramp."""
    height, width = size
    texture = F.interpolate(
        torch.rand(1, 3, 4, 6, generator=torch.Generator().manual_seed(7)), size=size, mode="bilinear"
    )
    edge = torch.linspace(0.2, 0.6, height)[None, None, :, None].expand(1, 3, height, width).clone()
    edge[..., width // 2 :] += 0.4
    return backbone.normalise(torch.cat([texture, edge]))


def features(backbone, x=None, layers=None):
    with torch.no_grad():
        return backbone.forward_features(images(backbone) if x is None else x, layers or backbone.layers)


# ------------------------------------------------------------------------------------------ registry and geometry
def test_registered_by_their_family_modules_with_timm_models():
    names = BACKBONES.names()
    assert set(NAMES) <= set(names)
    for name in NAMES:
        family = "cradiov3" if name.startswith("cradiov3") else "dinov3"
        assert BACKBONES.get(name).module == f"{BACKBONES.package}.{family}"
        assert backbone_spec(name).model == TIMM_MODEL[name]
        assert backbone_facts(name).layers == tuple(f"block{k}" for k in range(1, DEPTH[name] + 1))
    assert set(dinov3.VARIANTS) == {n for n in names if n.startswith("dinov3_")}


@pytest.mark.parametrize("name", NAMES)
def test_layer_specs_give_the_26_by_34_grid_of_the_crop(zoo, name):
    backbone = zoo[name] if name in zoo else meta_vitl()
    facts = backbone_facts(name)
    assert backbone.layers == facts.layers and backbone.class_token == facts.class_token is True
    assert (backbone.text, backbone.zeroshot_layer) == (False, None)
    assert backbone.input_size == CROP_SIZE == (416, 544)  # a multiple of 16: no resize
    for spec in backbone.layer_specs.values():
        assert (spec.channels, spec.stride, spec.grid) == (WIDTH[name], 16, (416 // 16, 544 // 16)) == (
            WIDTH[name], 16, (26, 34),
        )  # fmt: skip
    assert BACKBONES.get(name).config.valid_layers == facts.layers


@pytest.mark.parametrize("name", BUILT)
def test_tiny_shapes_frozen_and_refusals(zoo, name):
    backbone = zoo[name]
    feats = features(backbone)
    assert list(feats) == [key for layer in backbone.layers for key in (layer, layer + CLS_SUFFIX)]
    for layer in backbone.layers:
        assert feats[layer].shape == (2, WIDTH[name], 2, 3) and feats[layer + CLS_SUFFIX].shape == (2, WIDTH[name])
    backbone.train()
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())
    with pytest.raises(BackboneError, match="multiples of 16"):
        backbone.forward_features(torch.zeros(1, 3, 40, 48), ("block1",))
    with pytest.raises(BackboneError, match=r"unknown layer\(s\) \['block25'\]"):
        backbone.forward_features(torch.zeros(1, 3, 32, 48), ("block25",))


def test_preprocess_normalises_the_crop_without_resizing(zoo):
    """DINOv3: ImageNet statistics; C-RADIOv3: RADIO's input conditioner (OpenAI CLIP's), both as timm records them
    for the model; neither the crop nor the frame is resized."""
    crop = torch.rand(1, 3, *CROP_SIZE, generator=torch.Generator().manual_seed(0))
    for name, mean in (("dinov3_vits16", IMAGENET_MEAN), ("cradiov3_vitb16", cradiov3.CLIP_MEAN)):
        cfg = timm.models.get_pretrained_cfg(TIMM_MODEL[name])
        assert tuple(cfg.mean) == tuple(mean) == zoo[name].mean and tuple(cfg.std) == zoo[name].std
        m, s = torch.tensor(cfg.mean)[:, None, None], torch.tensor(cfg.std)[:, None, None]
        torch.testing.assert_close(zoo[name].preprocess(crop), (crop - m) / s, rtol=0, atol=1e-6)
        frame = torch.rand(1, 3, 480, 640, generator=torch.Generator().manual_seed(1))  # full-frame evaluation
        torch.testing.assert_close(zoo[name].preprocess(frame), (frame - m) / s, rtol=0, atol=1e-6)
    assert IMAGENET_STD == tuple(timm.models.get_pretrained_cfg(TIMM_MODEL["dinov3_vits16"]).std)
    with pytest.raises(BackboneError, match="416 x 544 crop or the B x 3 x 480 x 640 frame"):
        zoo["cradiov3_vitb16"].preprocess(torch.rand(1, 3, 400, 640))


# ------------------------------------------------------------------------------------------ random init
@pytest.mark.parametrize("name", BUILT)
def test_random_init_is_informative(zoo, name):
    """Finite, O(1) features at every layer that follow the image, vary across positions, change between blocks."""
    feats = features(zoo[name])
    previous = None
    for key, value in feats.items():
        assert torch.isfinite(value).all() and 0.2 < value.std().item() < 20, (key, value.std().item())
        assert (value[0] - value[1]).std() > 0.1 * value.std(), key
        if key.endswith(CLS_SUFFIX):
            continue
        assert value.flatten(2).std(dim=2).mean() > 0.1 * value.std(), key
        if previous is not None:
            assert F.cosine_similarity(previous.flatten(), value.flatten(), dim=0) < 0.999, key
        previous = value


def test_random_init_is_seeded_and_leaves_the_global_rng(zoo):
    name = "dinov3_vits16"
    state = torch.random.get_rng_state()
    other, twin = build(name, seed=1), build(name, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    ours = features(zoo[name], layers=("block12",))
    assert not torch.allclose(features(other, layers=("block12",))["block12"], ours["block12"])
    assert all(torch.equal(v, ours[k]) for k, v in features(twin, layers=("block12",)).items())


# ------------------------------------------------------------------------------------------ timm agreement
@pytest.mark.parametrize("name", ["dinov3_vits16", "dinov3_vitb16"])
def test_dinov3_blocks_with_and_without_timm_final_norm(zoo, name):
    """final_norm True: timm's own ``norm`` applied to every token of each block's output (DINOv3's
    get_intermediate_layers(norm=True)), registers dropped; False: the blocks' raw outputs."""
    backbone = zoo[name]
    assert backbone.final_norm is True
    raw = _vit.TimmViTBackbone(backbone.vit, name=name, final_norm=False)
    x = images(backbone)
    normed, plain = features(backbone, x), features(raw, x)
    _, outputs, _ = block_outputs(backbone.vit.blocks, lambda: backbone.vit.forward_features(x))
    skip = PREFIX["dinov3"]
    with torch.no_grad():
        for k, out in enumerate(outputs, start=1):
            tokens = backbone.vit.norm(out)
            torch.testing.assert_close(
                normed[f"block{k}"], _vit.tokens_to_map(tokens[:, skip:], (2, 3)), rtol=0, atol=1e-5
            )
            torch.testing.assert_close(normed[f"block{k}_cls"], tokens[:, 0], rtol=0, atol=1e-5)
            torch.testing.assert_close(plain[f"block{k}"], _vit.tokens_to_map(out[:, skip:], (2, 3)), rtol=0, atol=1e-5)
            torch.testing.assert_close(plain[f"block{k}_cls"], out[:, 0], rtol=0, atol=1e-5)
        torch.testing.assert_close(  # the last block, normed, is timm's own forward_features
            normed["block12"], _vit.tokens_to_map(backbone.vit.forward_features(x)[:, skip:], (2, 3)), rtol=0, atol=1e-5
        )


def test_radio_blocks_and_rope_free_position_rule_match_timm(zoo):
    """Blocks are NaFlexVit's own (hooks); the block-1 input's patch tokens are the patch projection plus RADIO's
    position rule written out: the 128 x 128 table bilinearly (align_corners True) resized to the longest side,
    top-left cells kept."""
    backbone = zoo["cradiov3_vitb16"]
    vit, x = backbone.vit, images(backbone)
    feats = features(backbone, x)
    inputs, outputs, _ = block_outputs(vit.blocks, lambda: vit.forward_features(x))
    skip = PREFIX["cradiov3"]
    assert vit.num_prefix_tokens == skip
    for k, out in enumerate(outputs, start=1):
        torch.testing.assert_close(feats[f"block{k}"], _vit.tokens_to_map(out[:, skip:], (2, 3)), rtol=0, atol=1e-5)
        torch.testing.assert_close(feats[f"block{k}_cls"], out[:, 0], rtol=0, atol=1e-5)
    with torch.no_grad():
        patches = x.reshape(2, 3, 2, 16, 3, 16).permute(0, 2, 4, 3, 5, 1).reshape(2, 6, 16 * 16 * 3)
        table = vit.embeds.pos_embed.permute(0, 3, 1, 2)  # 1 x C x 128 x 128
        pos = F.interpolate(table, size=(3, 3), mode="bilinear", align_corners=True)[:, :, :2, :3]
        expected = vit.embeds.proj(patches) + pos.flatten(2).transpose(1, 2)
    assert tuple(table.shape[-2:]) == (128, 128)
    torch.testing.assert_close(inputs[0][:, skip:], expected, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------ weights
def test_state_dict_loads_strictly_and_reproduces_outputs(zoo):
    """DINOv3 ViT-S loaded from its own state dict gives the same features; C-RADIOv3's state dict (a 400 MB copy
    to load, so only checked) fits its skeleton exactly; a missing or unexpected key is refused for both."""
    name = "dinov3_vits16"
    state = dict(zoo[name].library_model.state_dict())
    loaded = build(name, seed=1, state_dict=state)
    expected = features(zoo[name], layers=("block2", "block12"))
    assert all(torch.equal(v, expected[k]) for k, v in features(loaded, layers=("block2", "block12")).items())
    radio = dict(zoo["cradiov3_vitb16"].library_model.state_dict())
    with torch.device("meta"):
        check_state_dict(timm.create_model("naflexvit_base_patch16_radio_v3").state_dict(), radio, backbone="radio")
    for name, weights in (("dinov3_vits16", state), ("cradiov3_vitb16", radio)):
        first = sorted(weights)[0]
        weights["not.a.weight"] = weights.pop(first)
        with pytest.raises(
            BackboneError, match=rf"missing key\(s\) \['{first}'\].*unexpected key\(s\) \['not.a.weight'\]"
        ):
            build(name, state_dict=weights)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k].to(a[k].dtype)) for k in a)


def test_meta_and_timm_dinov3_files_convert_to_the_same_state_dict(zoo, tmp_path, capsys):
    """Meta's .pth and timm's safetensors of the same weights give timm's state dict, as timm's own
    checkpoint_filter_fn converts Meta's; converting again changes nothing; a non-zero q bias is refused."""
    from safetensors.torch import save_file

    from depthcore.weights.backbone import state_dict_of

    name, vit = "dinov3_vits16", zoo["dinov3_vits16"].vit
    # every kind of entry, the blocks cut to the first (the conversion treats every block alike)
    state = {k: v for k, v in vit.state_dict().items() if not k.startswith("blocks.") or k.startswith("blocks.0.")}
    meta = dinov3_release(state, vit.rope.periods, tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    save_file(state, str(tmp_path / "model.safetensors"))
    from_meta = state_dict_of(name, tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    assert same_state(state, from_meta) and same_state(state, state_dict_of(name, tmp_path / "model.safetensors"))
    assert same_state(from_meta, timm.models.eva.checkpoint_filter_fn(dict(meta), vit))
    capsys.readouterr()  # timm prints why it skips the qkv bias
    save_file(from_meta, str(tmp_path / "converted.safetensors"))
    assert same_state(from_meta, state_dict_of(name, tmp_path / "converted.safetensors"))  # idempotent
    meta["blocks.0.attn.qkv.bias"] = torch.full((3 * 384,), 0.1)
    torch.save(meta, tmp_path / "biased.pth")
    with pytest.raises(WeightsError, match=r"blocks.0.attn.qkv.bias is not zero"):
        state_dict_of(name, tmp_path / "biased.pth")


@pytest.mark.parametrize("name", ["dinov3_vitb16", "dinov3_vitl16"])
def test_meta_key_layout_converts_to_timm_keys_and_shapes(name):
    """Meta's layout of ViT-B and ViT-L (shapes on the meta device, the biases real) converts to exactly the keys
    and shapes of timm's model."""
    with torch.device("meta"):
        expected = timm.create_model(TIMM_MODEL[name].split(".")[0], pretrained=False).state_dict()
    width = WIDTH[name]
    meta = {}
    for key, value in expected.items():
        key = key.replace("reg_token", "storage_tokens").replace(".gamma_1", ".ls1.gamma")
        meta[key.replace(".gamma_2", ".ls2.gamma")] = value
        if key.endswith("attn.qkv.weight"):
            meta[key.replace("weight", "bias")] = torch.zeros(3 * width)
            meta[key.replace("weight", "bias_mask")] = torch.ones(3 * width)
    meta |= {"mask_token": torch.empty(1, width, device="meta"), "rope_embed.periods": torch.empty(16)}
    check_state_dict(expected, dinov3.convert_state_dict(meta), backbone=name)


def test_nvidia_and_timm_radio_files_convert_to_the_same_state_dict(zoo, tmp_path):
    """NVIDIA's C-RADIOv3-B file gives timm's NaFlexVit state dict, as timm's own converter does; converting again
    changes nothing; a foreign input conditioner and timm's classic (32 x 32 table) layout are refused."""
    from depthcore.weights.backbone import state_dict_of

    name, vit = "cradiov3_vitb16", zoo["cradiov3_vitb16"].vit
    # every kind of entry, the blocks cut to the first (the conversion treats every block alike; 400 MB less to write)
    state = {k: v for k, v in vit.state_dict().items() if not k.startswith("blocks.") or k.startswith("blocks.0.")}
    nvidia = radio_release(state, tmp_path / "C-RADIOv3-B.safetensors")
    converted = state_dict_of(name, tmp_path / "C-RADIOv3-B.safetensors")
    assert same_state(state, converted) and same_state(converted, cradiov3.convert_state_dict(converted))
    assert same_state(converted, timm.models.naflexvit.checkpoint_filter_fn(dict(nvidia), vit))
    nvidia["radio_model.input_conditioner.norm_mean"] = torch.full((3, 1, 1), 0.5)
    with pytest.raises(BackboneError, match="norm_mean .* not RADIO's"):
        cradiov3.convert_state_dict(nvidia)
    with torch.device("meta"):
        classic = timm.create_model("vit_base_patch16_radio_v3", pretrained=False).state_dict()
    with pytest.raises(BackboneError, match="missing key"):
        build(name, state_dict=cradiov3.convert_state_dict(classic))


def test_releases_are_timms_hugging_face_files_and_nvidias():
    for name in NAMES:
        spec = backbone_spec(name)
        cfg = timm.models.get_pretrained_cfg(spec.model)
        release = spec.releases[0]
        assert release.tag == "official" and cfg.hf_hub_id == f"timm/{spec.model}"
        assert release.url == f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors"
        assert release.format == "safetensors" and release.sha256 is None and release.citation
        assert ("DINOv3" if name.startswith("dinov3") else "NVIDIA Open Model") in release.licence
    nvidia = backbone_spec("cradiov3_vitb16").releases[1]
    assert (nvidia.tag, nvidia.url) == (
        "nvidia",
        "https://huggingface.co/nvidia/C-RADIOv3-B/resolve/main/model.safetensors",
    )


# ------------------------------------------------------------------------------------------ settings
def test_settings_and_the_lin4_layers_of_params_yaml():
    """final_norm is required (no defaults); params.yaml's layers are DINOv3's FOUR_EVEN_INTERVALS rule
    (dinov3/eval/segmentation/models/__init__.py: [i * depth // 4 - 1], [4, 11, 17, 23] for 24 blocks)."""
    with pytest.raises(ValidationError, match="final_norm"):
        BACKBONES.get("dinov3_vits16").config(pretrained="none", init_seed=0, layers=["block1"])
    with pytest.raises(ValidationError, match=r"unknown layer\(s\) \['block25'\]"):
        settings("dinov3_vitl16", layers=("block25",))
    assert settings("dinov3_vitl16", layers=("block24",)).layers == ("block24",)
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())["backbones"]
    for name in NAMES:
        depth = DEPTH[name]
        indices = [4, 11, 17, 23] if depth == 24 else [i * (depth // 4) - 1 for i in range(1, 5)]
        assert params[name]["layers"] == [f"block{i + 1}" for i in indices]
        assert params[name]["pretrained"] == "official" and params[name]["init_seed"] == 0
        assert params[name].get("final_norm", None) is (True if name.startswith("dinov3") else None)


def test_final_norm_goes_from_the_settings_through_backbone_json_to_the_loaded_backbone(tmp_path):
    from depthcore.weights.backbone import fetch_backbone_weights, load_backbone, selected_settings

    cfg = settings("dinov3_vits16", final_norm=False)  # not the builder's fallback (FINAL_NORM, DINOv3's rule)
    params = types.SimpleNamespace(backbone="dinov3_vits16", backbones=types.SimpleNamespace(dinov3_vits16=cfg))
    selected = selected_settings(params)
    assert selected["options"] == {"final_norm": False} and dinov3.FINAL_NORM is True
    fetch_backbone_weights(selected, tmp_path / "w", local_dir=tmp_path, downloads=tmp_path / "d", progress=False)
    assert load_backbone(tmp_path / "w").final_norm is False
    other = types.SimpleNamespace(
        backbone="cradiov3_vitb16", backbones=types.SimpleNamespace(cradiov3_vitb16=settings("cradiov3_vitb16"))
    )
    assert "options" not in selected_settings(other)  # backbones without further settings: backbone.json as before
