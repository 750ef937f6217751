"""The backbone zoo: every registered backbone on tiny CPU inputs (layer shapes against layer_specs, the canonical
416 x 544 geometry by arithmetic), seeded and informative random init, agreement with an independent forward of the
same library model, strict loading, settings validation, and the weights releases.

Models are built once per module (seed 0), plus a twin (seed 0), another seed and a loaded copy per backbone;
torch runs one thread here (tiny tensors: thread hand-offs would cost more than the work).
"""

from __future__ import annotations

import math
import types

import pytest
import torch
import torch.nn.functional as F
from conftest import block_outputs
from pydantic import ValidationError

from depthcore.errors import ConfigError, DepthcoreError
from depthcore.geometry.frame import CLIP_LAYERS, IMAGENET_MEAN, IMAGENET_STD, NYU_HEIGHT, NYU_WIDTH, crop_tensor
from depthcore.models.backbones.clip import build_clip_backbone
from depthcore.models.backbones.zoo import _vit, sam_vitb
from depthcore.models.backbones.zoo.base import (
    CLS_SUFFIX,
    CROP_SIZE,
    WEIGHTS_FORMATS,
    BackboneError,
    FrozenBackbone,
    find_release,
)
from depthcore.models.backbones.zoo.registry import BACKBONES, backbone_facts, backbone_spec, build_backbone

NAMES = ("clip_rn50", "clip_vitb16", "dinov2_vitb14", "dinov2_vits14", "sam_vitb")
RN50 = "RN50-quickgelu"
# Tiny network inputs (H, W) and the grid each gives (SAM 96 x 64: 6 x 4 tokens, of which the 4 rows covering the
# crop resized to width 64, int(416 * 64 / 544 + 0.5) = 49 pixels, are kept).
TINY = {
    "clip_rn50": (64, 64),
    "clip_vitb16": (32, 48),
    "dinov2_vitb14": (28, 42),
    "dinov2_vits14": (28, 42),
    "sam_vitb": (96, 64),
}
# Network input and grids on the 416 x 544 crop.
CANONICAL_INPUT = {
    "clip_rn50": (416, 544),
    "clip_vitb16": (416, 544),
    "dinov2_vitb14": (420, 546),
    "dinov2_vits14": (420, 546),
    "sam_vitb": (1024, 1024),
}
RN50_GRIDS = {"stem": (208, 272), "layer1": (104, 136), "layer2": (52, 68), "layer3": (26, 34), "layer4": (13, 17)}
VIT_GRID = {"clip_vitb16": (26, 34), "dinov2_vitb14": (30, 39), "dinov2_vits14": (30, 39), "sam_vitb": (49, 64)}
CHANNELS = {
    "clip_rn50": {"stem": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048},
    "clip_vitb16": {**{f"block{k}": 768 for k in range(1, 13)}, "dense": 512},
    "dinov2_vitb14": {f"block{k}": 768 for k in range(1, 13)},
    "dinov2_vits14": {f"block{k}": 384 for k in range(1, 13)},
    "sam_vitb": {**{f"block{k}": 768 for k in range(1, 13)}, "neck": 256},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def settings(name: str, seed: int = 0, layers: tuple[str, ...] | None = None):
    """(cfg, clip) for build_backbone: clip_rn50 reads the clip section (model, init_seed), the others their own."""
    plugin = BACKBONES.get(name)
    if name == "clip_rn50":
        return plugin.config(), types.SimpleNamespace(model=RN50, pretrained="none", init_seed=seed)
    return plugin.config(pretrained="none", init_seed=seed, layers=layers or ("block1",)), None


def build(name: str, seed: int = 0, state_dict=None) -> FrozenBackbone:
    cfg, clip = settings(name, seed)
    return build_backbone(name, cfg=cfg, clip=clip, state_dict=state_dict)


@pytest.fixture(scope="module")
def zoo() -> dict[str, FrozenBackbone]:
    return {name: build(name) for name in NAMES}


def images(backbone: FrozenBackbone, size: tuple[int, int]) -> torch.Tensor:
    """2 x 3 x H x W normalised network input: a smooth random texture, and a vertical edge over a ramp."""
    height, width = size
    generator = torch.Generator().manual_seed(7)
    texture = F.interpolate(
        torch.rand(1, 3, max(height // 8, 2), max(width // 8, 2), generator=generator), size=size, mode="bilinear"
    )
    edge = torch.linspace(0.2, 0.6, height)[None, None, :, None].expand(1, 3, height, width).clone()
    edge[..., width // 2 :] += 0.4
    return backbone.normalise(torch.cat([texture, edge]))


def features(backbone: FrozenBackbone, x: torch.Tensor, layers=None) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return backbone.forward_features(x, backbone.layers if layers is None else layers)


def tiny_features(backbone: FrozenBackbone) -> dict[str, torch.Tensor]:
    return features(backbone, images(backbone, TINY[backbone.name]))


# ------------------------------------------------------------------------------------------ registry and contract
def test_registry_lists_every_backbone_and_refuses_unknown_names():
    names = BACKBONES.names()  # the zoo grows (tests/test_backbones_recent.py covers the newer backbones)
    assert set(NAMES) <= set(names) and names == sorted(set(names))
    assert {BACKBONES.get(name).module.rpartition(".")[2] for name in names} == set(BACKBONES.modules())
    with pytest.raises(ConfigError, match=r"unknown backbone 'vit_huge'; valid backbones are \['clip_rn50'"):
        build_backbone("vit_huge", cfg=None)
    # a family module registers its variants: the DINOv2 ones are dinov2.py's, an unlisted variant is unknown
    assert {BACKBONES.get(name).module for name in ("dinov2_vits14", "dinov2_vitb14")} == {
        f"{BACKBONES.package}.dinov2"
    }
    assert backbone_spec("dinov2_vitb14").model == "vit_base_patch14_dinov2.lvd142m"
    with pytest.raises(ConfigError, match=r"unknown backbone 'dinov2_vitg14'; valid backbones are \["):
        BACKBONES.get("dinov2_vitg14")


def test_a_backbone_is_registered_by_its_own_or_its_family_module():
    from depthcore.registry import Registry

    registry = Registry(BACKBONES.package, kind="backbone", plural="backbones", param="backbone")

    def build():
        pass

    build.__module__ = f"{BACKBONES.package}.dinov2"
    registry.register("dinov2_vitl14", config=object)(build)  # <family>_<variant> from <family>.py
    with pytest.raises(RuntimeError, match=r"'sam_vitl' must be registered by its own module sam_vitl.py or"):
        registry.register("sam_vitl", config=object)(build)
    with pytest.raises(RuntimeError, match="registered twice"):
        registry.register("dinov2_vitl14", config=object)(build)


@pytest.mark.parametrize("name", NAMES)
def test_contract_attributes_and_facts(zoo, name):
    backbone = zoo[name]
    facts = backbone_facts(name)
    assert backbone.layers == facts.layers == tuple(CHANNELS[name])
    assert (backbone.class_token, backbone.text, backbone.zeroshot_layer) == (
        facts.class_token,
        facts.text,
        facts.zeroshot_layer,
    )
    assert {k: v.channels for k, v in backbone.layer_specs.items()} == CHANNELS[name]
    assert backbone.zeroshot_layer is None or backbone.zeroshot_layer in backbone.layers
    assert backbone.text == (backbone.zeroshot_layer is not None)
    if name != "clip_rn50":
        assert BACKBONES.get(name).config.valid_layers == facts.layers


@pytest.mark.parametrize("name", NAMES)
def test_frozen_and_always_eval(zoo, name):
    backbone = zoo[name]
    backbone.train()
    assert not backbone.training and not any(m.training for m in backbone.modules())
    assert not any(p.requires_grad for p in backbone.parameters())


# ------------------------------------------------------------------------------------------ shapes and geometry
@pytest.mark.parametrize("name", NAMES)
def test_tiny_input_shapes_follow_layer_specs(zoo, name):
    backbone = zoo[name]
    height, width = TINY[name]
    feats = tiny_features(backbone)
    expected_keys = [
        key
        for layer in backbone.layers
        for key in ((layer, layer + CLS_SUFFIX) if backbone.class_token and layer.startswith("block") else (layer,))
    ]
    assert list(feats) == expected_keys
    for layer in backbone.layers:
        spec = backbone.layer_specs[layer]
        rows = sam_vitb.image_rows(height, width) if name == "sam_vitb" else height // spec.stride
        assert feats[layer].shape == (2, spec.channels, rows, width // spec.stride), layer
        if layer + CLS_SUFFIX in feats:
            assert feats[layer + CLS_SUFFIX].shape == (2, spec.channels)
    assert name != "sam_vitb" or feats["neck"].shape[-2:] == (4, 4)  # 4 of the 6 token rows cover the image


@pytest.mark.parametrize("name", NAMES)
def test_canonical_geometry_on_the_crop(zoo, name):
    """preprocess on the real 416 x 544 crop gives input_size, and the grid of every layer on it, by arithmetic."""
    backbone = zoo[name]
    assert CROP_SIZE == (416, 544)
    crop = torch.rand(1, 3, *CROP_SIZE, generator=torch.Generator().manual_seed(0))
    x = backbone.preprocess(crop)
    assert backbone.input_size == CANONICAL_INPUT[name] == tuple(x.shape[-2:]) and x.dtype == torch.float32
    for layer, spec in backbone.layer_specs.items():
        grid = RN50_GRIDS[layer] if name == "clip_rn50" else VIT_GRID[name]
        assert spec.grid == grid, layer
        if name == "sam_vitb":
            assert spec.grid == (math.ceil(783 / 16), 1024 // 16) == (49, 64)
        else:
            assert spec.grid == (x.shape[-2] // spec.stride, x.shape[-1] // spec.stride)
    with pytest.raises(BackboneError, match="416 x 544 crop or the B x 3 x 480 x 640 frame"):
        backbone.preprocess(torch.rand(1, 3, 416, 640))


# The network input of the whole 480 x 640 frame (params eval.frame: full), by each backbone's rule for the crop:
# no resize for multiples of the stride, DINOv2's next multiples of 14, SAM's longest side 1024 padded square.
FRAME_INPUT = {
    "clip_rn50": (480, 640),
    "clip_vitb16": (480, 640),
    "dinov2_vitb14": (490, 644),
    "dinov2_vits14": (490, 644),
    "sam_vitb": (1024, 1024),
}


@pytest.mark.parametrize("name", NAMES)
def test_the_frame_is_preprocessed_by_the_crops_rule(zoo, name):
    frame = torch.rand(1, 3, NYU_HEIGHT, NYU_WIDTH, generator=torch.Generator().manual_seed(0))
    x = zoo[name].preprocess(frame)
    assert tuple(x.shape[-2:]) == FRAME_INPUT[name]
    if name.startswith("dinov2"):
        resized = F.interpolate(frame, size=(490, 644), mode="bilinear", align_corners=False)
        torch.testing.assert_close(x, zoo[name].normalise(resized))


def test_sam_keeps_the_token_rows_that_cover_the_frame(zoo):
    """The frame at longest side 1024 is 768 rows (SAM's own ResizeLongestSide), padded to 1024: 48 of the 49 rows
    forward_features keeps for the crop cover it; image_maps cuts the 49th (class-token-free maps only)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    sam = zoo["sam_vitb"]
    assert ResizeLongestSide.get_preprocess_shape(NYU_HEIGHT, NYU_WIDTH, 1024) == (768, 1024)
    frame = torch.rand(1, 3, NYU_HEIGHT, NYU_WIDTH)
    x = sam.preprocess(frame)
    assert torch.equal(x[..., 768:, :], torch.zeros(1, 3, 1024 - 768, 1024)) and x[..., 767, :].abs().sum() > 0
    feats = {"block1": torch.rand(1, 768, 49, 64), "neck": torch.rand(1, 256, 49, 64)}
    kept = sam.image_maps(feats, (NYU_HEIGHT, NYU_WIDTH))
    assert {k: tuple(v.shape) for k, v in kept.items()} == {"block1": (1, 768, 48, 64), "neck": (1, 256, 48, 64)}
    assert torch.equal(kept["neck"], feats["neck"][:, :, :48])
    assert sam.image_maps(feats, CROP_SIZE)["block1"].shape[2] == 49  # the crop: what forward_features keeps


def test_dinov2_runs_at_the_canonical_size(zoo):
    """One full-size forward (DINOv2 ViT-S is cheap on a CPU): 420 x 546 -> a 30 x 39 grid."""
    backbone = zoo["dinov2_vits14"]
    x = backbone.preprocess(torch.rand(1, 3, *CROP_SIZE))
    feats = features(backbone, x, ("block12",))
    assert feats["block12"].shape == (1, 384, 30, 39) and feats["block12_cls"].shape == (1, 384)


def test_clip_rn50_preprocess_is_the_feature_stage_normalisation(zoo):
    from depthcore.features.backbone import PIXEL_SCALE, preprocess

    frames = torch.randint(0, 256, (2, NYU_HEIGHT, NYU_WIDTH, 3), dtype=torch.uint8)
    crop = crop_tensor(frames.permute(0, 3, 1, 2)).float() * PIXEL_SCALE
    assert torch.equal(zoo["clip_rn50"].preprocess(crop), preprocess(frames))


def test_clip_vitb16_preprocess_uses_clip_statistics(zoo):
    import open_clip

    crop = torch.rand(1, 3, *CROP_SIZE)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN)[:, None, None]
    std = torch.tensor(open_clip.OPENAI_DATASET_STD)[:, None, None]
    torch.testing.assert_close(zoo["clip_vitb16"].preprocess(crop), (crop - mean) / std)


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vitb14"])
def test_dinov2_preprocess_resizes_bilinearly_to_multiples_of_14(zoo, name):
    crop = torch.rand(1, 3, *CROP_SIZE)
    resized = F.interpolate(crop, size=(420, 546), mode="bilinear", align_corners=False)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(zoo[name].preprocess(crop), (resized - mean) / std)
    flat = zoo[name].preprocess(torch.full((1, 3, *CROP_SIZE), 0.5))  # a constant image stays constant
    torch.testing.assert_close(flat, ((torch.full((1, 3, 1, 1), 0.5) - mean) / std).expand_as(flat))


def test_sam_preprocess_resizes_longest_side_and_pads(zoo):
    from segment_anything.utils.transforms import ResizeLongestSide

    assert (
        ResizeLongestSide.get_preprocess_shape(*CROP_SIZE, 1024) == (783, 1024) == (sam_vitb.resized_height(1024), 1024)
    )
    crop = torch.rand(1, 3, *CROP_SIZE)
    x = zoo["sam_vitb"].preprocess(crop)
    mean = torch.tensor(sam_vitb.PIXEL_MEAN)[:, None, None]
    std = torch.tensor(sam_vitb.PIXEL_STD)[:, None, None]
    resized = F.interpolate(crop * 255.0, size=(783, 1024), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(x[..., :783, :], (resized - mean) / std, rtol=1e-5, atol=1e-4)
    assert torch.equal(x[..., 783:, :], torch.zeros(1, 3, 1024 - 783, 1024))


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_and_layers_are_refused(zoo, name):
    backbone = zoo[name]
    height, width = TINY[name]
    with pytest.raises(BackboneError, match="B x 3 x H x W"):
        backbone.forward_features(torch.zeros(1, 4, height, width), backbone.layers[:1])
    with pytest.raises(BackboneError, match="multiples of"):
        backbone.forward_features(torch.zeros(1, 3, height + 1, width), backbone.layers[:1])
    with pytest.raises(
        BackboneError, match=rf"unknown layer\(s\) \['layer9'\].*valid layers are \['{backbone.layers[0]}'"
    ):
        backbone.forward_features(torch.zeros(1, 3, height, width), ("layer9",))


# ------------------------------------------------------------------------------------------ random init
@pytest.mark.parametrize("name", NAMES)
def test_random_init_is_informative(zoo, name):
    """Offline random weights give finite, O(1) features at every exposed layer that differ between two images,
    vary across positions, and change from block to block."""
    feats = tiny_features(zoo[name])
    previous = None
    for key, value in feats.items():
        assert torch.isfinite(value).all(), key
        assert 0.2 < value.std().item() < 20, (key, value.std().item())
        assert (value[0] - value[1]).std() > 0.1 * value.std(), key  # follows the image
        if key.endswith(CLS_SUFFIX):
            continue
        spatial = value.flatten(2).std(dim=2).mean()  # per image and channel, across positions
        assert spatial > 0.1 * value.std(), key
        if previous is not None and previous.shape == value.shape:
            assert F.cosine_similarity(previous.flatten(), value.flatten(), dim=0) < 0.999, key
        previous = value


# Seeding is checked by builds with another seed (and, where a build is cheap, a twin with the same seed: the twin
# checks the seeded builder, base.instantiate, which clip_vitb16 shares). dinov2_vitb14 has dinov2_vits14's builder
# (build_timm_vit); clip_rn50 is ClipBackbone's (its seeds: tests/test_clip_backbone.py; bit-identity below).
SEEDED = ("clip_vitb16", "dinov2_vits14", "sam_vitb")
TWINNED = ("dinov2_vits14", "sam_vitb")


@pytest.mark.parametrize("name", SEEDED)
def test_random_init_is_seeded_and_leaves_the_global_rng(zoo, name):
    feats = tiny_features(zoo[name])
    state = torch.random.get_rng_state()
    other = build(name, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    last = zoo[name].layers[-1]
    assert not torch.allclose(tiny_features(other)[last], feats[last])
    if name in TWINNED:
        assert all(torch.equal(v, feats[k]) for k, v in tiny_features(build(name, seed=0)).items())


def test_clip_rn50_is_bit_identical_to_clip_backbone(zoo):
    """Today's path: an independently built ClipBackbone with the same seed gives the same bits at every layer."""
    backbone = zoo["clip_rn50"]
    reference = build_clip_backbone(model=RN50, init_seed=0)
    x = images(backbone, TINY["clip_rn50"])
    ours = features(backbone, x)
    with torch.no_grad():
        theirs = reference.forward_features(x, CLIP_LAYERS)
    assert list(ours) == list(theirs) == list(CLIP_LAYERS)
    assert all(torch.equal(ours[k], theirs[k]) for k in CLIP_LAYERS)
    assert backbone.layer_specs["layer4"].stride == reference.layer_specs["layer4"].stride == 32


# ------------------------------------------------------------------------------------------ weights
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_loads_strictly_and_reproduces_outputs(zoo, name):
    state = {k: v.clone() for k, v in zoo[name].library_model.state_dict().items()}
    loaded = build(name, seed=1, state_dict=state)
    expected = tiny_features(zoo[name])
    assert all(torch.equal(v, expected[k]) for k, v in tiny_features(loaded).items())

    first = sorted(state)[0]
    del state[first]
    state["not.a.weight"] = torch.zeros(1)
    with pytest.raises(BackboneError, match=rf"missing key\(s\) \['{first}'\].*unexpected key\(s\) \['not.a.weight'\]"):
        build(name, state_dict=state)


def test_weights_files(tmp_path):
    """state_dict_of: each backbone's conversion, and converting a converted state dict changes nothing (SAM keeps
    image_encoder.* with the prefix removed, timm's fc MLP names become lin; DINOv2 drops Meta's mask_token; CLIP
    unwraps and drops OpenAI's metadata); foreign files are refused."""
    from safetensors.torch import save_file

    from depthcore.weights.backbone import state_dict_of

    weight = torch.arange(6.0).reshape(2, 3)
    cases = {
        "sam_vitb": (
            {"image_encoder.blocks.0.mlp.lin1.weight": weight, "mask_decoder.x": weight},
            {"blocks.0.mlp.fc1.weight": weight},  # timm's samvit
        ),
        "dinov2_vits14": ({"cls_token": weight, "mask_token": weight},),
        "clip_vitb16": ({"state_dict": {"module.visual.proj": weight, "module.input_resolution": torch.tensor(224)}},),
    }
    expected = {
        "sam_vitb": ["blocks.0.mlp.lin1.weight"],
        "dinov2_vits14": ["cls_token"],
        "clip_vitb16": ["visual.proj"],
    }
    for name, files in cases.items():
        for state in files:
            torch.save(state, tmp_path / "w.pth")
            converted = state_dict_of(name, tmp_path / "w.pth")
            assert list(converted) == expected[name] and torch.equal(converted[expected[name][0]], weight)
            save_file(converted, str(tmp_path / "w.safetensors"))
            assert state_dict_of(name, tmp_path / "w.safetensors").keys() == converted.keys()  # idempotent
    torch.save({"patch_embed.proj.weight": weight}, tmp_path / "timm.pth")
    with pytest.raises(DepthcoreError, match="no visual.* entries.*keys are timm's"):
        state_dict_of("clip_vitb16", tmp_path / "timm.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    for name in ("sam_vitb", "dinov2_vitb14", "clip_vitb16", "clip_rn50"):
        with pytest.raises(DepthcoreError):
            state_dict_of(name, tmp_path / "junk.pth")


def test_releases():
    import open_clip

    from depthcore.weights.fetch_sam import SAM_CHECKPOINTS

    for name in NAMES:
        releases = backbone_spec(name).releases
        assert releases and all(r.format in WEIGHTS_FORMATS and r.licence and r.citation for r in releases)
    for name, model in (("clip_vitb16", "ViT-B-16-quickgelu"), ("clip_rn50", "RN50-quickgelu")):
        release = find_release(backbone_spec(name).releases, "openai", backbone=name)
        assert release.url == open_clip.get_pretrained_url(model, "openai") and release.format == "openai_jit"
        assert release.sha256 == release.url.split("/")[-2] and len(release.sha256) == 64
    for name, model in (("dinov2_vits14", "vit_small"), ("dinov2_vitb14", "vit_base")):
        spec = backbone_spec(name)
        release = find_release(spec.releases, "official", backbone=name)
        assert spec.model == f"{model}_patch14_dinov2.lvd142m"
        assert release.url == f"https://huggingface.co/timm/{spec.model}/resolve/main/model.safetensors"
        assert release.sha256 is None and release.format == "safetensors" and release.licence == "Apache-2.0"
    release = find_release(sam_vitb.RELEASES, "official", backbone="sam_vitb")
    assert (release.url, release.sha256) == (SAM_CHECKPOINTS["vit_b"].url, SAM_CHECKPOINTS["vit_b"].sha256)
    with pytest.raises(BackboneError, match=r"no release 'openai'; releases are \['official'\]"):
        find_release(sam_vitb.RELEASES, "openai", backbone="sam_vitb")


# ------------------------------------------------------------------------------------------ settings
def test_settings_validate_layers():
    cfg = BACKBONES.get("sam_vitb").config(pretrained="official", init_seed=0, layers=["block3", "neck"])
    assert cfg.layers == ("block3", "neck")
    with pytest.raises(ValidationError, match=r"unknown layer\(s\) \['block13'\].*valid layers are \['block1',"):
        BACKBONES.get("dinov2_vits14").config(pretrained="none", init_seed=0, layers=["block13"])
    with pytest.raises(ValidationError, match="more than once"):
        BACKBONES.get("clip_vitb16").config(pretrained="none", init_seed=0, layers=["dense", "dense"])
    with pytest.raises(ValidationError, match="extra"):
        BACKBONES.get("clip_vitb16").config(pretrained="none", init_seed=0, layers=["dense"], size=3)
    with pytest.raises(ValidationError):
        BACKBONES.get("clip_rn50").config(pretrained="openai")  # its settings are the clip section
    with pytest.raises(BackboneError, match="clip section"):
        build_backbone("clip_rn50", cfg=BACKBONES.get("clip_rn50").config())


# ------------------------------------------------------------------------------------------ text towers
@pytest.mark.parametrize("name", NAMES)
def test_encode_text(zoo, name):
    backbone = zoo[name]
    if not backbone.text:
        with pytest.raises(BackboneError, match="no text tower"):
            backbone.encode_text(["a close object"])
        return
    emb = backbone.encode_text(["This object is close", "This object is far"])
    assert emb.shape == (2, backbone.embed_dim) == (2, {"clip_rn50": 1024, "clip_vitb16": 512}[name])
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))


# ------------------------------------------------------------------------------------------ library agreement
@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vitb14"])
def test_dinov2_blocks_are_timm_blocks_without_final_norm(zoo, name):
    backbone = zoo[name]
    x = images(backbone, TINY[name])
    feats = features(backbone, x)
    _, outputs, _ = block_outputs(backbone.vit.blocks, lambda: backbone.vit.forward_features(x))
    h, w = TINY[name][0] // 14, TINY[name][1] // 14
    for k, out in enumerate(outputs, start=1):
        torch.testing.assert_close(feats[f"block{k}"], _vit.tokens_to_map(out[:, 1:], (h, w)), rtol=0, atol=1e-6)
        torch.testing.assert_close(feats[f"block{k}_cls"], out[:, 0], rtol=0, atol=1e-6)
    with torch.no_grad():  # timm's DINO interface, norm=False as DINOv2's depth heads call it
        (patches, prefix), *_ = backbone.vit.get_intermediate_layers(
            x, n=[4], reshape=True, return_prefix_tokens=True, norm=False
        )
    torch.testing.assert_close(feats["block5"], patches, rtol=0, atol=1e-6)
    torch.testing.assert_close(feats["block5_cls"], prefix[:, 0], rtol=0, atol=1e-6)


def test_sam_matches_the_image_encoder(zoo):
    """Blocks (hooks) and neck (``image_encoder(x)``) of segment_anything's own forward, its 64 x 64 position
    embedding replaced by ours at the tiny grid; the position embedding is the identity at 1024."""
    backbone = zoo["sam_vitb"]
    encoder = backbone.encoder
    assert backbone.position_embedding((64, 64)) is not None
    assert torch.equal(backbone.position_embedding((64, 64)), encoder.pos_embed)
    x = images(backbone, TINY["sam_vitb"])
    feats = features(backbone, x)
    grid = (TINY["sam_vitb"][0] // 16, TINY["sam_vitb"][1] // 16)
    table = encoder.pos_embed
    expected_pos = F.interpolate(table.permute(0, 3, 1, 2), size=grid, mode="bicubic", align_corners=False)
    torch.testing.assert_close(backbone.position_embedding(grid), expected_pos.permute(0, 2, 3, 1))
    encoder.pos_embed = torch.nn.Parameter(backbone.position_embedding(grid).clone(), requires_grad=False)
    try:
        _, outputs, neck = block_outputs(encoder.blocks, lambda: encoder(x))
    finally:
        encoder.pos_embed = table
    rows = sam_vitb.image_rows(*TINY["sam_vitb"])
    assert rows == 4 < grid[0]
    for k, out in enumerate(outputs, start=1):
        torch.testing.assert_close(feats[f"block{k}"], out.permute(0, 3, 1, 2)[:, :, :rows], rtol=0, atol=1e-5)
    torch.testing.assert_close(feats["neck"], neck[:, :, :rows], rtol=0, atol=1e-5)


def test_clip_vitb16_matches_open_clip_and_maskclip_by_hand(zoo):
    """At 224 x 224 (the 14 x 14 table, no resizing) the blocks are open_clip's own (hooks on the resblocks), the
    class token after ln_post and proj is open_clip's image embedding, and ``dense`` is MaskCLIP's value path
    through the last block, written out from its weights."""
    backbone = zoo["clip_vitb16"]
    visual = backbone.clip.visual
    assert torch.equal(backbone.positional_embedding((14, 14)), visual.positional_embedding)
    x = images(backbone, (224, 224))
    feats = features(backbone, x)
    inputs, outputs, pooled = block_outputs(visual.transformer.resblocks, lambda: visual(x))
    for k, out in enumerate(outputs, start=1):
        torch.testing.assert_close(feats[f"block{k}"], _vit.tokens_to_map(out[:, 1:], (14, 14)), rtol=0, atol=1e-5)
        torch.testing.assert_close(feats[f"block{k}_cls"], out[:, 0], rtol=0, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(visual.ln_post(feats["block12_cls"]) @ visual.proj, pooled, rtol=0, atol=1e-5)

    block, tokens, width = visual.transformer.resblocks[-1], inputs[-1], 768
    with torch.no_grad():
        y = F.layer_norm(tokens, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
        v = y @ block.attn.in_proj_weight[2 * width :].T + block.attn.in_proj_bias[2 * width :]  # value projection
        v = tokens + (v @ block.attn.out_proj.weight.T + block.attn.out_proj.bias)  # out proj, residual
        h = F.layer_norm(v, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
        h = h @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        v = v + (h @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias)
        v = F.layer_norm(v, (width,), visual.ln_post.weight, visual.ln_post.bias, visual.ln_post.eps)
        dense = v[:, 1:] @ visual.proj  # B x 196 x 512
    torch.testing.assert_close(feats["dense"], _vit.tokens_to_map(dense, (14, 14)), rtol=0, atol=1e-4)


def test_clip_vitb16_resizes_the_positional_embedding_bicubically(zoo):
    backbone = zoo["clip_vitb16"]
    table = backbone.clip.visual.positional_embedding
    grid = F.interpolate(
        table[1:].reshape(1, 14, 14, 768).permute(0, 3, 1, 2), size=(26, 34), mode="bicubic", align_corners=False
    )
    expected = torch.cat([table[:1], grid.flatten(2)[0].T])
    torch.testing.assert_close(backbone.positional_embedding((26, 34)), expected, rtol=0, atol=0)


def test_live_features_of_the_frame_are_sams_covering_rows(zoo):
    """Full-frame evaluation's route (LiveFeatures on the 480 x 640 frame): SAM's maps are the 48 rows of the
    padded 1024 x 1024 input that cover the frame, the forward_features rows themselves (no resampling)."""
    from depthcore.data.batch import BACKBONE_FLIP, BACKBONE_RGB
    from depthcore.features.live import LiveFeatures

    sam, frame = zoo["sam_vitb"], torch.rand(1, 3, NYU_HEIGHT, NYU_WIDTH, generator=torch.Generator().manual_seed(2))
    out = LiveFeatures(sam, ("clip_block1",))({BACKBONE_RGB: frame, BACKBONE_FLIP: torch.tensor([False])})
    assert out["clip_block1"].shape == (1, 768, 48, 64)
    with torch.no_grad():
        full = sam.forward_features(sam.preprocess(frame), ("block1",))["block1"]
    assert full.shape[2] == 49 and torch.equal(out["clip_block1"], full[:, :, :48].to(torch.float16))
