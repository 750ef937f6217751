"""The published models: parameter counts derived by hand from the published architecture, shapes, the
bounded residual, the frozen on-the-fly CLIP stem and layer1."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F
from conftest import make_params

from depthcore.artifacts import load_shallow, save_shallow
from depthcore.models.adapters._msa_unet import PublishedMSA, bounded_residual, initial_depth
from depthcore.models.adapters.base import AdapterContext
from depthcore.models.adapters.coarse_refine import Coarse, Refine
from depthcore.models.adapters.registry import build_adapter
from depthcore.models.backbones.clip import ClipBackbone
from depthcore.models.backbones.clip_shallow import ClipShallow, build_clip_shallow, shallow_state_dict
from depthcore.models.heads.depthclip import DepthCLIPHead

NYU = (416, 544)
BINS = (1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00)
TINY_SKIPS = (2, 8, 16, 32, 64)  # stem, layer1..layer4 at 1/32 of RN50's widths
TINY_DECODER = (64, 32, 16, 8, 4, 2)
STRIDES = (2, 4, 8, 16, 32)
LAYERS = ("stem", "layer1", "layer2", "layer3", "layer4")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def rn50_context(size=NYU, **kwargs) -> AdapterContext:
    """The RN50 context at the NYU crop: layer channels and strides, the head's 7 x 1024 prompts."""
    channels = dict(zip(LAYERS, (64, 256, 512, 1024, 2048), strict=True))
    text = F.normalize(torch.randn(len(BINS), 1024), dim=-1)
    head = DepthCLIPHead(text_embeddings=text, bins=BINS, temperature=0.1)
    strides = dict(zip(LAYERS, STRIDES, strict=True))
    return AdapterContext(image_size=size, layer_channels=channels, layer_strides=strides, head=head, **kwargs)


def tiny_context(**kwargs) -> tuple[AdapterContext, dict[str, torch.Tensor]]:
    """A tiny CLIP's context at 64 x 64 (its stem and layer1 weights included) and a matching batch."""
    tiny = tiny_clip()
    specs = ClipBackbone(tiny, model_name="RN50-quickgelu").layer_specs
    channels = {name: spec.channels for name, spec in specs.items()}
    context = AdapterContext(
        image_size=(64, 64),
        layer_channels=channels,
        layer_strides=dict(zip(LAYERS, STRIDES, strict=True)),
        shallow=shallow_state_dict(tiny.visual),
        **kwargs,
    )
    batch = {"rgb": torch.rand(1, 3, 64, 64)}
    batch |= {
        f"clip_{name}": torch.rand(1, c, 64 // specs[name].stride, 64 // specs[name].stride)
        for name, c in channels.items()
    }
    return context, batch


def published(name: str, **overrides):
    return make_params({"adapter": name} | {f"adapters.{name}.{k}": v for k, v in overrides.items()}).adapter_config


def conv(cin: int, cout: int, k: int) -> int:
    """Parameters of a k x k conv (or transposed conv) with bias."""
    return cin * cout * k * k + cout


def conv_block(cin: int, cout: int) -> int:
    """3 x 3 conv with bias + BatchNorm (weight and bias)."""
    return conv(cin, cout, 3) + 2 * cout


def up_block(prev: int, out: int, skip: int) -> int:
    return conv(prev, out, 2) + conv_block(out + skip, out) + conv_block(out, out)


# --------------------------------------------------------------------------------------------- parameter counts
def test_published_msa_parameter_count():
    bridge = 2 * conv_block(2048, 2048)  # 2 * (2048*2048*9 + 2048 + 2*2048) = 75_509_760
    ups = (
        up_block(2048, 1024, 1024)  # 8_389_632 + 18_877_440 + 9_440_256 = 36_707_328
        + up_block(1024, 512, 512)  # 9_178_624
        + up_block(512, 256, 256)  # 2_295_552
        + up_block(256, 128, 64)  # 500_608
        + up_block(128, 64, 3)  # 108_672
    )
    head = 64 * 1 + 1
    expected = bridge + ups + head
    assert expected == 124_300_609  # the arithmetic above, summed by hand
    with torch.device("meta"):
        assert n_params(PublishedMSA()) == expected
        # SAM branch: two 3 -> 3 conv blocks (2 * (81 + 3 + 6) = 180) and 3 more input channels in the last block
        seg_extra = 2 * conv_block(3, 3) + 3 * 64 * 9
        assert n_params(PublishedMSA(segments=True)) == expected + seg_extra == 124_300_609 + 180 + 1_728


def test_published_msa_adapter_trains_exactly_the_decoder():
    """Through the registry, with the published settings at reduced widths: the trainable parameters are the
    decoder's (the on-the-fly CLIP stem and layer1 are frozen)."""
    shallow = shallow_state_dict(rn50_clip().visual)
    model = build_adapter("msa", cfg=published("msa", widths=list(TINY_DECODER)), context=rn50_context(shallow=shallow))
    decoder = PublishedMSA(decoder_channels=TINY_DECODER)
    assert n_params(model) == n_params(decoder) and sum(p.numel() for p in model.shallow.parameters()) == 244_576


def test_published_clip_adapter_parameter_count():
    adapter = build_adapter("clip_adapter", cfg=published("clip_adapter"), context=rn50_context())
    image_mlp = 2048 * (2048 // 256) + (2048 // 256) * 2048  # no biases: 16_384 + 16_384
    text_mlp = 1024 * (1024 // 128) + (1024 // 128) * 1024  # 8_192 + 8_192
    assert n_params(adapter.image_adapter) == image_mlp == 32_768
    assert n_params(adapter.text_adapter) == text_mlp == 16_384
    assert n_params(adapter) == 49_152  # the text embeddings and bins are buffers


def test_published_coarse_and_refine_parameter_counts():
    with torch.device("meta"):
        coarse = Coarse(in_size=(13, 17), hidden=4096, out_size=(104, 136))
        model = build_adapter("coarse_refine", cfg=published("coarse_refine"), context=rn50_context())
    fc1 = 13 * 17 * 4096 + 4096  # 905_216 + 4_096 = 909_312
    fc2 = 4096 * 104 * 136 + 104 * 136  # 57_933_824 + 14_144 = 57_947_968
    assert n_params(coarse) == fc1 + fc2 == 58_857_280
    refine = conv(3, 63, 9) + conv(64, 64, 5) + conv(64, 1, 5)  # 15_372 + 102_464 + 1_601
    assert n_params(Refine()) == refine == 119_437
    assert n_params(model) == fc1 + fc2 + refine  # the zero-shot map's text and bins are buffers


# --------------------------------------------------------------------------------------------- shapes and outputs
def tiny_pyramid(size: tuple[int, int] = NYU, batch: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    h, w = size
    return [
        torch.randn(batch, c, h // s, w // s, generator=gen).half() for c, s in zip(TINY_SKIPS, STRIDES, strict=True)
    ]


def test_msa_shapes_at_nyu_size_reduced_widths():
    torch.manual_seed(0)
    image = torch.randn(1, 3, *NYU)
    feats = tiny_pyramid()
    msa = PublishedMSA(skip_channels=TINY_SKIPS, decoder_channels=TINY_DECODER).eval()
    with torch.no_grad():
        delta = msa.residual(image, *feats)
    assert delta.shape == (1, 1, *NYU) and delta.dtype == torch.float32
    seg = PublishedMSA(skip_channels=TINY_SKIPS, decoder_channels=TINY_DECODER, segments=True).eval()
    with torch.no_grad():
        assert seg.residual(image, *feats, torch.rand(1, 3, *NYU)).shape == (1, 1, *NYU)
    with pytest.raises(ValueError, match="segments"):
        seg.residual(image, *feats)


ROUNDING = 1e-6  # one float32 ulp of a depth below 8 m: the sum alpha * zeroshot + residual is rounded


def test_bounded_residual_never_leaves_one_metre():
    for value in (-1e30, -50.0, -1.0, 0.0, 1.0, 50.0, 1e30, float("inf"), float("-inf")):
        assert bounded_residual(torch.full((1, 1, 2, 2), value)).abs().max() <= 1.0
    # through the adapter ("CLIP as initial", published): the head's bias pushed to the extremes (alpha >= 1, so
    # alpha * Z - 1 >= 0 with bins of 1..3 m and the output clamp at 0 does not cut the residual)
    text = F.normalize(torch.randn(len(BINS), 128), dim=-1)
    context, batch = tiny_context(head=DepthCLIPHead(text_embeddings=text, bins=BINS, temperature=0.1))
    for alpha in (1.0, 2.0):
        model = build_adapter("msa", cfg=published("msa", alpha=alpha, widths=list(TINY_DECODER)), context=context)
        start = alpha * initial_depth(batch["clip_layer4"], text, torch.tensor(BINS), size=(64, 64), temperature=0.001)
        for bias in (-1e6, 1e6):
            torch.nn.init.constant_(model.decoder.head.bias, bias)
            with torch.no_grad():
                gap = (model(batch) - start).abs()
            assert gap.max() <= 1.0 + ROUNDING and gap.min() > 0.99


def test_alpha_zero_is_the_clamped_delta():
    context, batch = tiny_context()
    model = build_adapter("msa", cfg=published("msa", widths=list(TINY_DECODER)), context=context)
    for bias, want in ((-3.0, 0.0), (12.0, 10.0)):
        torch.nn.init.zeros_(model.decoder.head.weight)
        torch.nn.init.constant_(model.decoder.head.bias, bias)
        with torch.no_grad():
            assert torch.equal(model(batch), torch.full((1, 1, 64, 64), want))


def test_initial_depth_is_upsampled_sharp_head():
    gen = torch.Generator().manual_seed(1)
    layer4, text = torch.randn(2, 64, 2, 3, generator=gen).relu(), torch.randn(7, 32, generator=gen)
    bins = torch.tensor(BINS)
    out = initial_depth(layer4, text, bins, size=(32, 48), temperature=0.001)
    assert out.shape == (2, 1, 32, 48) and out.min() >= 1.0 and out.max() <= 3.0
    # align_corners=True keeps the corner values of the 2 x 3 map
    small = initial_depth(layer4, text, bins, size=(2, 3), temperature=0.001)
    assert torch.allclose(out[..., 0, 0], small[..., 0, 0]) and torch.allclose(out[..., -1, -1], small[..., -1, -1])


def test_coarse_refine_output_at_stride_4():
    model = build_adapter("coarse_refine", cfg=published("coarse_refine", hidden=16), context=rn50_context())
    batch = {"rgb": torch.rand(2, 3, *NYU), "clip_layer4": torch.rand(2, 2048, 13, 17)}
    with torch.no_grad():
        out = model(batch)
    assert out.shape == (2, 1, 104, 136) and model.output_stride == 4


def test_clip_adapter_ratio_zero_is_the_plain_head():
    gen = torch.Generator().manual_seed(2)
    text = torch.randn(len(BINS), 32, generator=gen)
    layer4 = torch.randn(2, 64, 3, 4, generator=gen).relu() * 5
    head = DepthCLIPHead(text_embeddings=text, bins=BINS, temperature=0.1)
    context = AdapterContext(
        image_size=(96, 128), layer_channels={"layer4": 64}, layer_strides={"layer4": 32}, head=head
    )
    cfg = published("clip_adapter", image_reduction=8, text_reduction=4, ratio=0.0)
    adapter = build_adapter("clip_adapter", cfg=cfg, context=context)
    # independent: keep channels 0, 2, ..., renormalise, cosine with the unit text, / 0.1, softmax, expected bin
    x = layer4.permute(0, 2, 3, 1)[..., 0::2]
    x = x / x.norm(dim=-1, keepdim=True)
    t = text / text.norm(dim=-1, keepdim=True)
    probs = torch.softmax((x @ t.T) / 0.1, dim=-1)
    expected = (probs * torch.tensor(BINS)).sum(-1)[:, None]
    torch.testing.assert_close(adapter({"clip_layer4": layer4}), expected, rtol=1e-5, atol=1e-5)
    # with the published ratio the adapters change the prediction
    cfg = published("clip_adapter", image_reduction=8, text_reduction=4)
    mixed = build_adapter("clip_adapter", cfg=cfg, context=context)
    assert not torch.allclose(mixed({"clip_layer4": layer4}), expected)


# --------------------------------------------------------------------------------------------- ClipShallow
def randomise_batchnorm(model: torch.nn.Module, seed: int) -> None:
    """open_clip zero-initialises bn3 and leaves identity statistics: give every BatchNorm random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def tiny_clip(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.model.CLIP(
        embed_dim=128,
        vision_cfg={"layers": [2, 1, 1, 1], "width": 8, "head_width": 8, "image_size": 64},
        text_cfg={"width": 32, "heads": 2, "layers": 1},
        quick_gelu=True,
    )


def rn50_clip(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.create_model("RN50-quickgelu", pretrained=None)


@pytest.mark.parametrize("make", [tiny_clip, rn50_clip], ids=["tiny", "rn50"])
def test_clip_shallow_equals_backbone(make, tmp_path):
    model = make()
    randomise_batchnorm(model.visual, seed=3)
    backbone = ClipBackbone(model, model_name="RN50-quickgelu")
    saved = save_shallow(tmp_path / "shallow.safetensors", shallow_state_dict(model.visual))
    shallow = build_clip_shallow(state_dict=load_shallow(saved))
    assert shallow.width == model.visual.conv3.out_channels and shallow.layer1_blocks == len(model.visual.layer1)
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = backbone.forward_features(images, ("stem", "layer1"))
        got = shallow(images)
    assert got["stem"].shape == (1, shallow.width, 32, 32) and got["layer1"].shape == (1, 4 * shallow.width, 16, 16)
    assert torch.equal(got["stem"], want["stem"]) and torch.equal(got["layer1"], want["layer1"])


def test_clip_shallow_frozen_eval_and_dtype():
    model = tiny_clip()
    randomise_batchnorm(model.visual, seed=5)
    state = shallow_state_dict(model.visual)
    assert all(k.startswith(("conv", "bn", "layer1.", "config.")) for k in state)
    shallow = build_clip_shallow(state_dict=state)
    assert isinstance(shallow, ClipShallow)
    assert not any(p.requires_grad for p in shallow.parameters())
    shallow.train()
    assert not shallow.training and not any(m.training for m in shallow.modules())
    images = torch.randn(2, 3, 32, 48)
    ref = shallow(images)["layer1"]
    half = shallow(images.half())["layer1"]  # cast to the module's float32
    assert half.dtype == torch.float32 and torch.allclose(half, ref, atol=5e-2, rtol=5e-2)
    running = shallow.bn1.running_mean.clone()
    shallow(images * 3 + 1)  # train() was called, but statistics must not move
    assert torch.equal(shallow.bn1.running_mean, running)
    with pytest.raises(ValueError, match="multiples of 4"):
        shallow(torch.randn(1, 3, 30, 32))
