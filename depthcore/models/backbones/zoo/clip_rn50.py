"""The paper's CLIP ResNet path (:class:`depthcore.models.backbones.clip.ClipBackbone`) behind the zoo's interface,
its behaviour unchanged: layers stem, layer1..layer4 (strides 2..32), no class token, the text tower, and the
DepthCLIP head reading layer4.

Its settings stay the ``clip`` section (model, pretrained, init_seed, cache_layers), given to the builder as
``clip``; its ``backbones`` settings are empty. Input: the 416 x 544 crop, not resized, normalised with ImageNet
statistics (DepthCLIP's choice, exactly :func:`depthcore.features.backbone.preprocess`'s normalisation).
"""

from __future__ import annotations

import torch
from torch import nn

from depthcore.geometry.frame import CLIP_LAYERS, IMAGENET_MEAN, IMAGENET_STD, normalise_imagenet
from depthcore.models.backbones.clip import ClipBackbone, ClipError, build_clip_backbone
from depthcore.models.backbones.zoo._clip import accepted_clip_files, convert_clip_state_dict
from depthcore.models.backbones.zoo.base import (
    CROP_SIZE,
    BackboneError,
    BackboneFacts,
    BackboneSpec,
    FrozenBackbone,
    LayerSpec,
    WeightsRelease,
)
from depthcore.models.backbones.zoo.registry import register
from depthcore.section import Section

NAME = "clip_rn50"
MODEL = "RN50-quickgelu"  # the paper's; the clip section's model may name another open_clip ModifiedResNet
ZEROSHOT_LAYER = "layer4"
FACTS = BackboneFacts(layers=CLIP_LAYERS, class_token=False, text=True, zeroshot_layer=ZEROSHOT_LAYER)
# OpenAI's RN50 (open_clip.get_pretrained_url('RN50-quickgelu', 'openai')); the SHA-256 is the URL's second-to-last
# folder. The fetch_backbone stage (clip.pretrained: openai) downloads and converts it.
OPENAI_URL = (
    "https://openaipublic.azureedge.net/clip/models/"
    "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt"
)
RELEASES: tuple[WeightsRelease, ...] = (
    WeightsRelease(
        tag="openai",
        url=OPENAI_URL,
        filename="RN50.pt",
        sha256=OPENAI_URL.rstrip("/").split("/")[-2],
        format="openai_jit",
        licence="MIT",
        citation="Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021",
    ),
)


class ClipRN50Settings(Section):
    """Empty: clip_rn50 is configured by the ``clip`` section."""


class ClipRN50Backbone(FrozenBackbone):
    """The frozen ModifiedResNet CLIP of the ``clip`` section; ``backbone`` is the wrapped ClipBackbone (its
    attention-pool projections, its shallow layers)."""

    name = NAME
    class_token, text, zeroshot_layer = FACTS.class_token, FACTS.text, FACTS.zeroshot_layer

    def __init__(self, backbone: ClipBackbone):
        super().__init__()
        self.backbone = backbone
        self.input_size = CROP_SIZE
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.embed_dim = backbone.embed_dim
        self.layer_specs = {
            name: LayerSpec(spec.channels, spec.stride, (CROP_SIZE[0] // spec.stride, CROP_SIZE[1] // spec.stride))
            for name, spec in backbone.layer_specs.items()
        }
        self.freeze()

    @property
    def library_model(self) -> nn.Module:
        return self.backbone.clip

    def preprocess(self, crop: torch.Tensor) -> torch.Tensor:
        """B x 3 x 416 x 544 in [0, 1] -> the same size with ImageNet statistics (normalise_imagenet)."""
        self.check_crop(crop)
        return normalise_imagenet(crop.float())

    def forward_features(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """B x 3 x H x W (multiples of 32) -> {layer: B x C x H/stride x W/stride}: ClipBackbone.forward_features."""
        self.check_layers(layers)
        self.check_input(x, 32)
        return self.backbone.forward_features(x, tuple(layers))

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """prompts: K strings -> K x D text embeddings, L2-normalised (ClipBackbone.encode_text)."""
        return self.backbone.encode_text(prompts)


@register(
    NAME,
    config=ClipRN50Settings,
    spec=BackboneSpec(
        model=MODEL,
        facts=FACTS,
        releases=RELEASES,
        convert_state_dict=convert_clip_state_dict,
        accepted=accepted_clip_files("RN50.pt", "timm/resnet50_clip.openai"),
    ),
)
def build(*, cfg: ClipRN50Settings, state_dict: dict[str, torch.Tensor] | None = None, clip=None) -> ClipRN50Backbone:
    """The backbone of ``clip`` (the ClipSection: model, init_seed) through build_clip_backbone; ``state_dict``
    None: its seeded informative random weights. BackboneError when ``clip`` is missing or the weights do not fit."""
    if clip is None:
        raise BackboneError(f"backbone {NAME!r} is configured by the clip section: build it with clip=<params.clip>")
    try:
        backbone = build_clip_backbone(model=clip.model, state_dict=state_dict, init_seed=clip.init_seed)
    except ClipError as exc:
        raise BackboneError(str(exc)) from exc
    return ClipRN50Backbone(backbone)
