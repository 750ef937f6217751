"""The one contract every adapter follows, and the context it is built from.

An adapter is an ``nn.Module`` called as ``adapter(batch)``. ``batch`` is a dict of crop-space
tensors (the DepthCLIP crop, 416 x 544 for NYUv2; see ``depthcore.data.samples``):

- ``rgb``: B x 3 x H x W float in [0, 1] (adapters normalise it themselves, ImageNet statistics)
- ``clip_<layer>``: B x C x H/s x W/s cached CLIP features (any float dtype), layer in stem, layer1..4
- ``zeroshot``: B x 1 x H x W DepthCLIP zero-shot depth, metres
- ``segments``: B x H x W int64 segment ids, 0 = no segment

It returns depth B x 1 x H/``output_stride`` x W/``output_stride`` in metres. The batch keys an
adapter reads are declared by its settings (:meth:`AdapterConfig.batch_keys`), so the data pipeline
loads only those. CLIP itself is never part of an adapter: its features are inputs, and any CLIP
tensors an adapter needs (text embeddings, attention-pool projections) are buffers, saved in the
state dict but never trained.

An adapter also owns how it is trained: its training phases (:meth:`AdapterConfig.phases`: which model each
phase trains; :meth:`DepthAdapter.begin_phase`: what it loads from the previous phase and freezes) and which part
of its published preset (``presets.<adapter>`` in params.yaml, :meth:`AdapterConfig.preset_part`) each phase
runs. The training loop runs the phases in order and names none of them.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from depthcore.geometry.frame import DEPTHCLIP_CROP, crop_shape
from depthcore.models.heads.depthclip import PROJECTION_KEYS, DepthCLIPHead
from depthcore.section import Section

INIT_DEPTH = 2.0  # metres: the starting output of heads that predict depth from scratch
PUBLISHED_MAX_DEPTH = 10.0  # metres: the authors' data.max_depth; their models' outputs are clamped to [0, this]
WHOLE_MODEL = ""  # the name of the one phase of an adapter trained in one go
CLS_KEY_SUFFIX = "_cls"  # batch key of a cached layer's class token: clip_<layer>_cls (B x C)


@dataclass(frozen=True)
class Phase:
    """One training phase of an adapter. ``name`` labels its rows of the training curves and its checkpoint
    (:data:`WHOLE_MODEL` for an adapter trained in one go); ``config``: the settings of the model this phase
    trains (None: the adapter's own)."""

    name: str
    config: AdapterConfig | None = None


class AdapterConfig(Section):
    """Settings of one adapter (``adapters.<name>``), and what they imply: the batch fields the adapter reads
    (so that the data pipeline, and DVC, load exactly those): ``rgb``, ``depth``, ``zeroshot``, ``segments``
    and ``clip_<layer>`` for cached CLIP layers; ``needs_head`` / ``needs_shallow`` for the small CLIP
    artifacts; its training phases and the part of its published preset each runs. ``any_backbone``: it reads
    layers it is told (``layers``) and nothing CLIP-specific, so it fits every backbone of the zoo. ``any_size``:
    its weights do not depend on the image size and it predicts at the size it is built for (the context's
    ``image_size``), so a model trained on the crop can predict the whole frame (params ``eval.frame: full``).
    ``preset_parts``: the parts of its preset ``presets.<adapter>`` (one per training phase), or () for one
    preset for the whole model."""

    any_backbone: ClassVar[bool] = False
    any_size: ClassVar[bool] = False
    preset_parts: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def batch_keys(self) -> tuple[str, ...]:
        """The batch fields the adapter reads."""

    def cached_layers(self) -> tuple[str, ...]:
        """The cached backbone layers the adapter reads (from its batch keys; a class token key ``clip_<layer>_cls``
        is its layer's)."""
        layers = (
            key.removeprefix("clip_").removesuffix(CLS_KEY_SUFFIX)
            for key in self.batch_keys()
            if key.startswith("clip_")
        )
        return tuple(dict.fromkeys(layers))

    def class_token_layers(self) -> tuple[str, ...]:
        """The cached layers whose class token (``clip_<layer>_cls``) the adapter reads."""
        return tuple(
            key.removeprefix("clip_").removesuffix(CLS_KEY_SUFFIX)
            for key in self.batch_keys()
            if key.startswith("clip_") and key.endswith(CLS_KEY_SUFFIX)
        )

    def needs_head(self) -> bool:
        """Whether the adapter needs the DepthCLIP head (text embeddings) artifact."""
        return False

    def needs_shallow(self) -> bool:
        """Whether the adapter computes CLIP's shallow layers itself (needs their weights artifact)."""
        return False

    def phases(self) -> tuple[Phase, ...]:
        """The training phases, in order (default: the whole model in one phase)."""
        return (Phase(WHOLE_MODEL),)

    def preset_part(self, phase: str) -> str | None:
        """The part of the adapter's published preset that training ``phase`` runs (one of ``preset_parts``), or
        None: the preset is one for the whole model."""
        return None


def clip_key(layer: str) -> str:
    """Batch key of a cached CLIP layer, e.g. 'clip_layer4'."""
    return f"clip_{layer}"


@dataclass
class AdapterContext:
    """What adapters are built from besides their own settings.

    image_size: (H, W) of the crop-space input; layer_channels / layer_strides: channels and stride of
    each cached CLIP layer; head: the frozen DepthCLIP head (text embeddings, bins) for adapters that need it;
    shallow: the CLIP stem and layer1 state dict (``depthcore.models.backbones.clip_shallow``) for adapters that compute
    those layers themselves.
    """

    image_size: tuple[int, int] = crop_shape(DEPTHCLIP_CROP)
    layer_channels: dict[str, int] = field(default_factory=dict)
    layer_strides: dict[str, int] = field(default_factory=dict)
    head: DepthCLIPHead | None = None
    shallow: dict[str, torch.Tensor] | None = None

    def describe(self) -> dict[str, Any]:
        """Plain description (for checkpoints) from which :meth:`from_description` rebuilds the shapes."""
        head = None
        if self.head is not None:
            head = {
                "dense": self.head.dense,
                "temperature": self.head.temperature,
                "text_shape": list(self.head.text.shape),
                "projection_shapes": {
                    key: list(getattr(self.head, key).shape) for key in PROJECTION_KEYS if hasattr(self.head, key)
                },
            }
        shallow = None if self.shallow is None else {k: list(v.shape) for k, v in self.shallow.items()}
        config = {k: int(v) for k, v in (self.shallow or {}).items() if k.startswith("config.")}
        return {
            "image_size": list(self.image_size),
            "layer_channels": dict(self.layer_channels),
            "layer_strides": dict(self.layer_strides),
            "head": head,
            "shallow": None if shallow is None else {"shapes": shallow, "config": config},
        }

    @classmethod
    def from_features(cls, attrs: Mapping[str, Any], **kwargs) -> AdapterContext:
        """The context of a backbone.zarr store, from its attrs (input size, per-layer channels and stride)."""
        layers = attrs["layers"]
        return cls(
            image_size=tuple(attrs["input_size"]),
            layer_channels={name: spec["channels"] for name, spec in layers.items()},
            layer_strides={name: spec["stride"] for name, spec in layers.items()},
            **kwargs,
        )

    @classmethod
    def from_description(cls, desc: dict[str, Any]) -> AdapterContext:
        """A context whose head has the described shapes and placeholder values (a state dict fills them)."""
        head = None
        if desc.get("head") is not None:
            h = desc["head"]
            k, d = h["text_shape"]
            projections = {key: torch.zeros(shape) for key, shape in h["projection_shapes"].items()} or None
            head = DepthCLIPHead(
                text_embeddings=torch.zeros(k, d),
                bins=torch.zeros(k),
                temperature=h["temperature"],
                dense=h["dense"],
                projections=projections,
            )
        shallow = None
        if desc.get("shallow") is not None:  # placeholders of the right shapes and the exact config entries
            shallow = {k: torch.zeros(shape) for k, shape in desc["shallow"]["shapes"].items()}
            shallow |= {k: torch.tensor(v) for k, v in desc["shallow"]["config"].items()}
        return cls(
            image_size=tuple(desc["image_size"]),
            layer_channels=dict(desc["layer_channels"]),
            layer_strides=dict(desc["layer_strides"]),
            head=head,
            shallow=shallow,
        )

    def require_layers(self, layers: tuple[str, ...], adapter: str) -> None:
        """ValueError unless every layer in ``layers`` is available."""
        missing = [layer for layer in layers if layer not in self.layer_channels]
        if missing:
            raise ValueError(
                f"adapter {adapter!r} needs CLIP layer(s) {missing}; the features provide {sorted(self.layer_channels)}"
            )


class DepthAdapter(nn.Module):
    """Base class: the adapter's settings (which say what it reads) and its output stride."""

    output_stride: int = 1

    def __init__(self, cfg: AdapterConfig):
        super().__init__()
        self.cfg = cfg

    def batch_keys(self) -> tuple[str, ...]:
        """Every batch key the adapter reads."""
        return self.cfg.batch_keys()

    def begin_phase(self, phase: str, previous: DepthAdapter | None) -> None:
        """Prepare this model for training ``phase`` from the model the previous phase trained (None for the
        first): load what it keeps, freeze what stays fixed. Default: nothing to carry over."""


def check_divisible(image_size: tuple[int, int], stride: int, adapter: str) -> None:
    """ValueError unless both image sides are multiples of ``stride``."""
    if image_size[0] % stride or image_size[1] % stride:
        raise ValueError(f"adapter {adapter!r}: image size {tuple(image_size)} must be a multiple of {stride}")
