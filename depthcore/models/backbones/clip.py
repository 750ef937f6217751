"""The frozen CLIP backbone: multi-scale visual features and the text encoder.

Only OpenAI's ModifiedResNet image towers (open_clip ``RN*`` models) are supported: their
stem / layer1..layer4 structure gives the feature pyramid that DepthCLIP and the adapters use.
Weights are given as a state dict (the ``fetch_backbone`` stage's folder is read by :mod:`depthcore.weights.clip`).

Random weights (``clip.pretrained: none``, the offline mode) are made informative. With open_clip's
own random init (PyTorch's default conv scale, the last BatchNorm of every bottleneck at zero, and
BatchNorm in eval mode with unit statistics) every conv shrinks its input, and layer4 features are
~1e-3 in size (std 0.003 on a step image). Here, seeded: every conv is He-initialised (normal,
fan-in, ReLU gain) and each bottleneck's last BatchNorm scale is RESIDUAL_SCALE, so activations stay
O(1-10) through all 16 blocks (std 1.3 / 2.0 / 3.4 / 7.8 / 10.6 at stem / layer1..4 on that image) and
follow the image's content at every scale; offline learning tests can then tell a model that learns.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from depthcore.errors import DepthcoreError
from depthcore.geometry.frame import CLIP_LAYER_STRIDES, CLIP_LAYERS

OPENAI_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")  # in OpenAI's state dicts, not weights


class ClipError(DepthcoreError, ValueError):
    """An unknown CLIP model, a missing weights file, or weights that do not fit the model."""


def resnet_models() -> list[str]:
    """open_clip model names with a ModifiedResNet image tower (stem, layer1..layer4)."""
    import open_clip

    return sorted(
        name
        for name in open_clip.list_models()
        if name.startswith("RN") and (open_clip.get_model_config(name) or {}).get("vision_cfg", {}).get("layers")
    )


def check_model_name(name: str) -> None:
    """ClipError listing the valid names unless ``name`` is a ModifiedResNet CLIP model."""
    valid = resnet_models()
    if name not in valid:
        raise ClipError(
            f"params 'clip.model': unknown or unsupported CLIP model {name!r}; valid models (ModifiedResNet image "
            f"towers with stem/layer1..layer4) are {valid}"
        )


@dataclass(frozen=True)
class LayerSpec:
    """One cached feature map: channels and stride (input pixels per feature cell)."""

    channels: int
    stride: int


def layer_specs_of(visual: nn.Module) -> dict[str, LayerSpec]:
    """Channels and stride of each cacheable layer of an open_clip ModifiedResNet image tower."""
    channels = {"stem": visual.conv3.out_channels}
    for name in CLIP_LAYERS[1:]:
        channels[name] = getattr(visual, name)[-1].conv3.out_channels
    return {name: LayerSpec(channels[name], CLIP_LAYER_STRIDES[name]) for name in CLIP_LAYERS}


# ------------------------------------------------------------------------------------------ backbone
class ClipBackbone(nn.Module):
    """Frozen open_clip ModifiedResNet CLIP: multi-scale image features and prompt embeddings.

    Images are B x 3 x H x W, already cropped and normalised (H, W multiples of 32; DepthCLIP uses
    416 x 544 with ImageNet statistics). Parameters never require gradients and the module stays
    in eval mode (BatchNorm uses its running statistics) whatever ``train()`` is called with.
    """

    def __init__(self, clip_model: nn.Module, *, model_name: str):
        super().__init__()
        self.model_name = model_name
        self.clip = clip_model
        if not all(hasattr(clip_model.visual, name) for name in ("conv3", *CLIP_LAYERS[1:], "attnpool")):
            raise ClipError(f"{model_name}: the image tower is not a ModifiedResNet (stem, layer1..layer4)")
        self.layer_specs = layer_specs_of(clip_model.visual)  # per layer name: LayerSpec(channels, stride)
        self.embed_dim = int(clip_model.visual.output_dim)
        self.clip.requires_grad_(False)
        self.clip.eval()

    def train(self, mode: bool = True) -> ClipBackbone:  # frozen: always eval
        return super().train(False)

    def forward_features(self, images: torch.Tensor, layers: tuple[str, ...] = CLIP_LAYERS) -> dict[str, torch.Tensor]:
        """images: B x 3 x H x W normalised -> {layer: B x C x H/stride x W/stride} for ``layers``.

        The stem map is taken after the third stem conv (before the 2 x 2 average pool).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected B x 3 x H x W images, got {tuple(images.shape)}")
        if images.shape[-2] % 32 or images.shape[-1] % 32:
            raise ValueError(f"image height and width must be multiples of 32, got {tuple(images.shape[-2:])}")
        unknown = [name for name in layers if name not in CLIP_LAYER_STRIDES]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown}; valid layers are {list(CLIP_LAYERS)}")
        visual = self.clip.visual
        wanted = set(layers)
        last = max(CLIP_LAYERS.index(name) for name in layers)
        out: dict[str, torch.Tensor] = {}
        x = images.to(visual.conv1.weight.dtype)
        x = visual.act1(visual.bn1(visual.conv1(x)))
        x = visual.act2(visual.bn2(visual.conv2(x)))
        x = visual.act3(visual.bn3(visual.conv3(x)))
        if "stem" in wanted:
            out["stem"] = x
        x = visual.avgpool(x)
        for index, name in enumerate(CLIP_LAYERS[1:], start=1):
            if index > last:
                break
            x = getattr(visual, name)(x)
            if name in wanted:
                out[name] = x
        return out

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_features(images)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """prompts: K strings -> K x D text embeddings, L2-normalised (D = ``embed_dim``)."""
        return encode_prompts(self.clip, self.model_name, prompts)

    def attnpool_projections(self) -> dict[str, torch.Tensor]:
        """The attention pool's value and output projections (for MaskCLIP-style dense embeddings).

        Returns ``v_weight`` (C x C), ``v_bias`` (C), ``c_weight`` (D x C), ``c_bias`` (D), C = layer4
        channels, D = ``embed_dim``; detached copies in float32.
        """
        pool = self.clip.visual.attnpool
        return {
            "v_weight": pool.v_proj.weight.detach().float().clone(),
            "v_bias": pool.v_proj.bias.detach().float().clone(),
            "c_weight": pool.c_proj.weight.detach().float().clone(),
            "c_bias": pool.c_proj.bias.detach().float().clone(),
        }


@functools.cache
def clip_tokenizer(model_name: str):
    """open_clip's tokenizer of ``model_name``, loaded once per process."""
    import open_clip

    return open_clip.get_tokenizer(model_name)


@torch.no_grad()
def encode_prompts(clip_model: nn.Module, model_name: str, prompts: list[str]) -> torch.Tensor:
    """prompts: K strings -> K x D text embeddings of the open_clip model ``clip_model`` (its text tower, on its
    device), L2-normalised: what every CLIP backbone's ``encode_text`` returns."""
    if not prompts:
        raise ValueError("encode_text needs at least one prompt")
    tokens = clip_tokenizer(model_name)(list(prompts)).to(clip_model.token_embedding.weight.device)
    return F.normalize(clip_model.encode_text(tokens).float(), dim=-1)


RANDOM_INIT_WARNING = "No pretrained weights loaded for model"  # open_clip's, on the root logger


class _NoRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(RANDOM_INIT_WARNING)


@contextlib.contextmanager
def quiet_random_init() -> Iterator[None]:
    """open_clip's "No pretrained weights loaded ... initialized randomly" silenced while the block builds a model:
    depthcore builds the architecture, then loads its weights (or draws its own seeded ones) itself."""
    root, quiet = logging.getLogger(), _NoRandomInitWarning()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def create_clip_model(model: str, device: str = "cpu") -> nn.Module:
    """open_clip's ``model`` architecture on ``device``, without weights and without open_clip's warning."""
    import open_clip

    with quiet_random_init():
        return open_clip.create_model(model, pretrained=None, device=device)


def build_clip_backbone(
    *, model: str, state_dict: dict[str, torch.Tensor] | None = None, init_seed: int = 0, source: str = ""
) -> ClipBackbone:
    """The frozen backbone of open_clip ``model`` on CPU, float32 (move it with ``.to(device)``).

    ``state_dict`` None: seeded informative random init (the global RNG is left as it was); otherwise
    the weights are loaded strictly, and weights that do not fit the model raise ClipError naming the
    missing and unexpected keys (``source`` names the file in that message).
    """

    check_model_name(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        clip_model = create_clip_model(model)
        if state_dict is None:
            informative_random_init(clip_model.visual)
    if state_dict is not None:
        expected = set(clip_model.state_dict())
        missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
        if missing or unexpected:
            raise ClipError(
                f"{source or 'the weights'} do not match CLIP model {model!r}: {len(missing)} missing key(s) "
                f"{_preview(missing)}, {len(unexpected)} unexpected key(s) {_preview(unexpected)}. "
                "Check clip.model against the checkpoint."
            )
        try:
            clip_model.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:  # right names, wrong shapes
            raise ClipError(f"{source or 'the weights'} do not match CLIP model {model!r}: {exc}") from exc
    return ClipBackbone(clip_model, model_name=model)


RESIDUAL_SCALE = 0.5  # last BatchNorm scale of each bottleneck under the informative random init


def informative_random_init(visual: nn.Module) -> None:
    """He-initialise every conv of the image tower and set each bottleneck's last BatchNorm scale to
    RESIDUAL_SCALE (see the module docstring). Call under a seeded RNG."""
    for module in visual.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
    for name, param in visual.named_parameters():
        if name.startswith("layer") and name.endswith("bn3.weight"):
            nn.init.constant_(param, RESIDUAL_SCALE)


def _preview(keys: list[str], limit: int = 8) -> str:
    return str(keys[:limit] + (["..."] if len(keys) > limit else []))
