"""Every registered adapter on tiny CPU inputs: shape and units, gradients, no NaN; the registry."""

from __future__ import annotations

import pytest
import torch
from conftest import make_params

from depthcore.errors import DepthcoreError
from depthcore.models.adapters import ADAPTERS, AdapterContext, build_adapter, clip_key
from depthcore.models.adapters.msa import segment_boundaries, segment_mean
from depthcore.models.depthclip import DepthCLIPHead
from depthcore.params import ConfigError

H, W = 64, 96  # tiny crop, a multiple of 32
CHANNELS = {"stem": 8, "layer1": 16, "layer2": 16, "layer3": 32, "layer4": 64}
STRIDES = {"stem": 2, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
BINS = (1.0, 1.5, 2.0, 2.5, 3.0)
TINY = {
    "adapters.coarse_refine.hidden": 16,
    "adapters.coarse_refine.fine_channels": 8,
    "adapters.eigen.coarse_channels": [4, 4, 4, 4, 4],
    "adapters.eigen.hidden": 16,
    "adapters.eigen.fine_channels": 8,
    "adapters.msa.decoder_channels": 32,
    "adapters.msa.rgb_channels": 4,
    "adapters.msa.segments": "pool",
}


def settings(name: str, **overrides):
    """The settings of adapter ``name``: tiny widths, then ``overrides`` (keys of adapters.<name>)."""
    params = make_params(TINY | {f"adapters.{name}.{k}": v for k, v in overrides.items()})
    return getattr(params.adapters, name)


def tiny_context() -> AdapterContext:
    gen = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(len(BINS), CHANNELS["layer4"] // 2, generator=gen), dim=-1)
    head = DepthCLIPHead(text_embeddings=text, bins=BINS, temperature=0.1)
    return AdapterContext(image_size=(H, W), layer_channels=CHANNELS, layer_strides=STRIDES, head=head)


def tiny_batch(b: int = 2) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    batch = {
        "rgb": torch.rand(b, 3, H, W, generator=gen),
        "zeroshot": 1.0 + 2.0 * torch.rand(b, 1, H, W, generator=gen),
        "segments": torch.randint(0, 5, (b, H, W), generator=gen),
    }
    for layer, c in CHANNELS.items():
        batch[clip_key(layer)] = torch.rand(b, c, H // STRIDES[layer], W // STRIDES[layer], generator=gen).half()
    return batch


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_adapter_contract(name):
    torch.manual_seed(0)
    model = build_adapter(name, cfg=settings(name), context=tiny_context())
    batch = tiny_batch()
    for key in batch:
        batch[key].requires_grad_(batch[key].is_floating_point())
    pred = model({key: batch[key] for key in model.batch_keys()})  # only the declared inputs
    s = model.output_stride
    assert pred.shape == (2, 1, H // s, W // s)
    assert pred.dtype == torch.float32 and torch.isfinite(pred).all()
    assert 0.05 < pred.mean().item() < 10.0  # metres, not normalised units
    pred.mean().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for n, p in trainable:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    # CLIP is frozen: its features are inputs and its tensors (text, bins) buffers, never parameters.
    assert not any(n.startswith("head.") for n, _ in model.named_parameters())
    for layer in CHANNELS:
        if clip_key(layer) not in model.batch_keys():
            assert batch[clip_key(layer)].grad is None


def test_clip_adapter_switches_and_identity():
    ctx = tiny_context()
    batch = tiny_batch()
    for image, text in ((True, False), (False, True)):
        model = build_adapter(
            "clip_adapter", cfg=settings("clip_adapter", image=image, text=text, ratio=0.0), context=ctx
        )
        assert (model.image_adapter is not None) == image and (model.text_adapter is not None) == text
        # ratio 0 keeps the original embeddings: exactly DepthCLIP's zero-shot head
        torch.testing.assert_close(model(batch), ctx.head(batch["clip_layer4"]))
    with pytest.raises(ConfigError, match="both false"):
        settings("clip_adapter", image=False, text=False)


def test_registry_unknown_name_lists_valid():
    with pytest.raises(DepthcoreError, match="valid adapters are .*msa"):
        build_adapter("unet", cfg=settings("msa"), context=tiny_context())


def test_msa_segment_helpers_by_hand():
    labels = torch.tensor([[[1, 1, 2], [0, 2, 2]]])
    x = torch.tensor([[[[1.0, 3.0, 4.0], [9.0, 6.0, 8.0]]]])
    expected = torch.tensor([[[[2.0, 2.0, 6.0], [0.0, 6.0, 6.0]]]])
    torch.testing.assert_close(segment_mean(x, labels), expected)
    edges = segment_boundaries(labels)[0, 0]
    torch.testing.assert_close(edges, torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))


def test_msa_decoder_alone_needs_no_zeroshot():
    cfg = settings("msa", clip_init_weight=0.0, layers=["layer3", "layer4"])
    model = build_adapter("msa", cfg=cfg, context=tiny_context())
    assert "zeroshot" not in model.batch_keys() and model.cfg.cached_layers() == ("layer3", "layer4")
    pred = model(tiny_batch())
    assert (pred > 0).all()
