"""Every registered adapter, in each of its settings families, on tiny CPU inputs: shape and units,
gradients only where trainable, CLIP frozen, only the declared inputs read; the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import make_params, tiny_backbone

from depthcore.errors import DepthcoreError
from depthcore.models.adapters.base import AdapterContext, clip_key
from depthcore.models.adapters.msa import segment_boundaries, segment_colors, segment_mean
from depthcore.models.adapters.registry import ADAPTERS, build_adapter
from depthcore.models.backbones.clip_shallow import shallow_state_dict
from depthcore.models.heads.depthclip import DepthCLIPHead

H, W = 64, 96  # tiny crop, a multiple of 32
STRIDES = {"stem": 2, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
BINS = (1.0, 1.5, 2.0, 2.5, 3.0)
TINY = {
    "adapters.coarse_refine.hidden": 16,
    "adapters.eigen.coarse_channels": [4, 4, 4, 4, 4],
    "adapters.eigen.hidden": 16,
    "adapters.msa.widths": [32, 16, 16, 8, 8, 4],
    "adapters.msa.decoder_channels": 32,
    "adapters.msa.rgb_channels": 4,
    "clip.cache_layers": ["stem", "layer1", "layer2", "layer3", "layer4"],
}
# name -> (adapter, settings): the families of each adapter's settings
VARIANTS = {
    "clip_adapter": ("clip_adapter", {}),
    "clip_adapter_text_only": ("clip_adapter", {"image": False}),
    "coarse_refine": ("coarse_refine", {}),
    "coarse_only": ("coarse_refine", {"mode": "coarse", "training": "joint"}),
    "eigen": ("eigen", {}),
    "msa_published": ("msa", {}),
    "msa_published_clip_sam": ("msa", {"alpha": 1.0, "segments": "color"}),
    "msa_published_cached_shallow": ("msa", {"shallow": "cache"}),
    "msa_learned_clip": ("msa", {"alpha": 1.0, "clip_init": "learned"}),
    "msa_narrow_pool": ("msa", {"decoder": "narrow", "layers": ["layer2", "layer3", "layer4"], "segments": "pool"}),
    "msa_narrow_boundary": ("msa", {"decoder": "narrow", "layers": ["layer1", "layer4"], "segments": "boundary"}),
}


def settings(name: str, **overrides):
    """The settings of adapter ``name``: tiny widths, then ``overrides`` (keys of adapters.<name>)."""
    params = make_params(TINY | {"adapter": name} | {f"adapters.{name}.{k}": v for k, v in overrides.items()})
    return params.adapter_config


@pytest.fixture(scope="module")
def context() -> AdapterContext:
    clip = tiny_backbone()
    channels = {name: spec.channels for name, spec in clip.layer_specs.items()}
    gen = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(len(BINS), clip.embed_dim, generator=gen), dim=-1)
    head = DepthCLIPHead(text_embeddings=text, bins=BINS, temperature=0.1)
    return AdapterContext(
        image_size=(H, W),
        layer_channels=channels,
        layer_strides=STRIDES,
        head=head,
        shallow=shallow_state_dict(clip.clip.visual),
    )


def tiny_batch(context: AdapterContext, b: int = 2) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    batch = {
        "rgb": torch.rand(b, 3, H, W, generator=gen),
        "zeroshot": 1.0 + 2.0 * torch.rand(b, 1, H, W, generator=gen),
        "segments": torch.randint(0, 5, (b, H, W), generator=gen),
    }
    for layer, c in context.layer_channels.items():
        size = (b, c, H // STRIDES[layer], W // STRIDES[layer])
        batch[clip_key(layer)] = torch.rand(*size, generator=gen).half()
    return batch


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_adapter_contract(variant, context):
    name, overrides = VARIANTS[variant]
    torch.manual_seed(0)
    model = build_adapter(name, cfg=settings(name, **overrides), context=context)
    batch = tiny_batch(context)
    for key in batch:
        batch[key].requires_grad_(batch[key].is_floating_point())
    pred = model({key: batch[key] for key in model.batch_keys()})  # only the declared inputs
    s = model.output_stride
    assert pred.shape == (2, 1, H // s, W // s)
    assert pred.dtype == torch.float32 and torch.isfinite(pred).all()
    assert 0.0 <= pred.mean().item() < 10.0  # metres, not normalised units
    (pred - 2.0).pow(2).mean().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for n, p in trainable:
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    assert sum(p.grad.abs().sum() for _, p in trainable) > 0
    # CLIP is frozen: its features are inputs; its stem weights (when computed here) and text are not trained
    assert not any(n.startswith("shallow.") for n, _ in trainable)
    for layer in context.layer_channels:
        if clip_key(layer) not in model.batch_keys():
            assert batch[clip_key(layer)].grad is None


def test_clip_adapter_switches(context):
    for image, text in ((True, False), (False, True)):
        model = build_adapter("clip_adapter", cfg=settings("clip_adapter", image=image, text=text), context=context)
        assert (model.image_adapter is not None) == image and (model.text_adapter is not None) == text


def test_registry_unknown_name_lists_valid(context):
    with pytest.raises(DepthcoreError, match=r"params 'adapter': unknown adapter 'unet'; valid adapters are .*'msa'\]"):
        build_adapter("unet", cfg=settings("msa"), context=context)
    assert ADAPTERS.names() == ["clip_adapter", "coarse_refine", "dpt_probe", "eigen", "linear_probe", "msa"]


def test_building_one_plugin_imports_only_its_own_modules():
    """A run of one adapter and one loss imports (so, in DVC, depends on) no other adapter's or loss's code."""
    code = (
        "import sys\n"
        "from depthcore.losses.registry import LOSSES\n"
        "from depthcore.models.adapters.registry import ADAPTERS\n"
        "ADAPTERS.get('eigen'), LOSSES.get('l2')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('depthcore.models.adapters.', 'depthcore.losses.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.rpartition(".")[2] for name in eval(out)}  # noqa: S307  (our own printed list)
    assert loaded == {"base", "registry", "eigen", "coarse_refine", "l2"}  # eigen builds on coarse_refine


def test_msa_segment_helpers_by_hand():
    labels = torch.tensor([[[1, 1, 2], [0, 2, 2]]])
    x = torch.tensor([[[[1.0, 3.0, 4.0], [9.0, 6.0, 8.0]]]])
    expected = torch.tensor([[[[2.0, 2.0, 6.0], [0.0, 6.0, 6.0]]]])
    torch.testing.assert_close(segment_mean(x, labels), expected)
    edges = segment_boundaries(labels)[0, 0]
    torch.testing.assert_close(edges, torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))


def test_segment_colours_never_map_a_segment_to_the_no_segment_colour():
    ids = torch.arange(0, 5000).view(1, 50, 100)  # includes multiples of every colour factor and of 251
    colors = segment_colors(ids)
    black = (colors == 0).all(dim=1)[0]
    assert black[0, 0] and black.sum() == 1  # only id 0
    assert colors.min() >= 0 and colors.max() <= 1
    assert torch.equal(segment_colors(torch.full((1, 1, 1), 7)), segment_colors(torch.full((1, 1, 1), 7)))


def test_msa_reads_only_what_its_settings_need():
    published = settings("msa")
    assert published.batch_keys() == ("rgb", "clip_layer2", "clip_layer3", "clip_layer4")
    assert published.needs_shallow() and not published.needs_head()
    clip_init = settings("msa", alpha=1.0)
    assert clip_init.needs_head() and "zeroshot" not in clip_init.batch_keys()
    learned = settings("msa", alpha=1.0, clip_init="learned")
    assert "zeroshot" in learned.batch_keys() and not learned.needs_head()
    cached = settings("msa", shallow="cache")
    assert not cached.needs_shallow() and cached.cached_layers() == ("stem", "layer1", "layer2", "layer3", "layer4")


@pytest.mark.parametrize("decoder", ["published", "narrow"])
def test_msa_computes_the_shallow_layers_the_default_cache_lacks(context, decoder):
    """With the default cache (layer2..layer4) the stem and layer1 exist only through the CLIP stem weights."""
    cached = ("layer2", "layer3", "layer4")
    lean = AdapterContext(
        image_size=(H, W),
        layer_channels={k: v for k, v in context.layer_channels.items() if k in cached},
        layer_strides={k: v for k, v in context.layer_strides.items() if k in cached},
        shallow=context.shallow,
    )
    model = build_adapter("msa", cfg=settings("msa", decoder=decoder), context=lean)
    batch = tiny_batch(context)
    assert set(model.batch_keys()) == {"rgb", "clip_layer2", "clip_layer3", "clip_layer4"}
    assert model({key: batch[key] for key in model.batch_keys()}).shape == (2, 1, H, W)


@pytest.mark.parametrize("variant", ["coarse_refine", "coarse_only", "eigen"])
def test_coarse_refine_and_eigen_outputs_are_clamped_per_pass(variant, context):
    """As the authors' loop does in training and test: depth in [0, 10] m, no gradient where a pass is outside."""
    name, overrides = VARIANTS[variant]
    torch.manual_seed(0)
    model = build_adapter(name, cfg=settings(name, **overrides), context=context)
    last = model.refine.out_conv if model.refine is not None else model.coarse.net.fc2
    with torch.no_grad():  # spread the raw output far beyond [0, 10] on both sides
        last.weight.mul_(1e3)
        last.bias.fill_(5.0)
    batch = tiny_batch(context)
    coarse = model.coarse(batch)
    raw = (coarse if model.refine is None else model.refine(batch["rgb"], coarse)).detach()  # by hand, unclamped
    assert (raw < 0).any() and (raw > 10).any() and ((raw > 0) & (raw < 10)).any()
    pred = model(batch)
    torch.testing.assert_close(pred, raw.clamp(0.0, 10.0), rtol=0, atol=0)
    pred.sum().backward()
    inside = ((raw > 0) & (raw < 10)).float()  # d pred / d bias: 1 where the pass is inside, else 0
    expected = inside.sum() if last.bias.numel() == 1 else inside.sum(0).flatten()
    torch.testing.assert_close(last.bias.grad.reshape(expected.shape), expected)
