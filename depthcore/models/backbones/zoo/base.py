"""The one contract every backbone of the zoo follows: settings, weights releases, and the frozen module.

A backbone turns the DepthCLIP crop of an NYUv2 frame (B x 3 x 416 x 544 RGB in [0, 1], rows 56:472 and cols
60:604 of the 480 x 640 frame: ``DEPTHCLIP_CROP``) into feature maps:

- :meth:`FrozenBackbone.preprocess`: the crop -> the network input B x 3 x H x W (``input_size``): the backbone's
  own resize, normalisation and padding. The whole 480 x 640 frame is taken too, by the same rule (full-frame
  evaluation, params ``eval.frame: full``); :meth:`FrozenBackbone.image_maps` then keeps the cells that cover it;
- :meth:`FrozenBackbone.forward_features`: the network input -> ``{layer: B x C x h x w}`` (float), plus
  ``{layer}_cls``: B x C for block layers of backbones with a class token. Inputs other than the canonical size
  work too (the grid follows the input), which keeps CPU tests small.

``layer_specs`` describes every exposed layer: channels, the nominal stride (network-input pixels per cell: the
patch size of a ViT) and the grid (h, w) it has on the canonical crop. Backbones with a CLIP text tower
(``text``) also embed prompts (:meth:`FrozenBackbone.encode_text`) in the space of their ``zeroshot_layer``.

Weights: ``state_dict`` None builds seeded random weights (``init_seed``; the global RNG is left as it was) made
informative (features follow the image at every exposed layer, O(1) in size); otherwise the state dict is loaded
strictly, and one that does not fit raises :class:`BackboneError` naming the missing, unexpected and mis-shaped
keys. Where the official weights come from is each backbone's ``releases`` (:class:`BackboneSpec`); the fetch stage
downloads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from pydantic import Field, model_validator
from torch import nn

from depthcore.errors import DepthcoreError
from depthcore.geometry.frame import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_WIDTH, crop_shape
from depthcore.models.backbones.clip import LayerSpec as ClipLayerSpec
from depthcore.section import Section

CROP_SIZE = crop_shape(DEPTHCLIP_CROP)  # (416, 544): the crop every backbone's preprocess takes
FRAME_SIZE = (NYU_HEIGHT, NYU_WIDTH)  # the whole frame, which every preprocess takes as well
PREPROCESS_SIZES = (CROP_SIZE, FRAME_SIZE)
PRETRAINED_NONE = "none"  # the ``pretrained`` value of seeded random weights (the offline mode)
CLS_SUFFIX = "_cls"  # forward_features key of a block layer's class token: f"{layer}{CLS_SUFFIX}"


class BackboneError(DepthcoreError, ValueError):
    """Weights that are unreadable or do not fit the backbone, an input of the wrong shape, or an unknown layer."""


# ------------------------------------------------------------------------------------------ settings
class BackboneSettings(Section):
    """``backbones.<name>`` (every backbone but clip_rn50, whose settings are the ``clip`` section).

    ``pretrained``: a release tag of the backbone's ``RELEASES`` ('openai', 'official'), 'none' (seeded random
    weights from ``init_seed``, offline) or a file path; ``layers``: the exposed layers to cache. Each backbone
    subclasses this with its ``valid_layers``.
    """

    valid_layers: ClassVar[tuple[str, ...]] = ()  # the backbone's exposed layer names (set by each subclass)
    backbone: ClassVar[str] = ""  # the backbone's name, for messages

    pretrained: Annotated[str, Field(min_length=1)]
    init_seed: int
    layers: Annotated[tuple[str, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _known_layers(self) -> BackboneSettings:
        check_layer_names(self.layers, self.valid_layers, backbone=self.backbone)
        return self


def check_layer_names(layers: tuple[str, ...], valid: tuple[str, ...], *, backbone: str) -> None:
    """BackboneError (a ValueError) listing the valid layers unless ``layers`` names at least one of them, each
    once."""
    if not layers:
        raise BackboneError(f"no layers asked of backbone {backbone!r}; valid layers are {list(valid)}")
    unknown = [name for name in layers if name not in valid]
    if unknown:
        raise BackboneError(f"unknown layer(s) {unknown} of backbone {backbone!r}; valid layers are {list(valid)}")
    repeated = sorted({name for name in layers if layers.count(name) > 1})
    if repeated:
        raise BackboneError(f"layer(s) {repeated} of backbone {backbone!r} are listed more than once")


@dataclass(frozen=True)
class BackboneFacts:
    """What a backbone exposes, known without building it (params validation): its layer names in network order,
    whether block layers come with a class token, whether it has a CLIP text tower, and the layer the DepthCLIP head
    reads (None without text). Part of each backbone's :class:`BackboneSpec`; the built backbone's attributes agree."""

    layers: tuple[str, ...]
    class_token: bool
    text: bool
    zeroshot_layer: str | None


# ------------------------------------------------------------------------------------------ weights
@dataclass(frozen=True)
class WeightsRelease:
    """Where a backbone's official weights come from (the fetch stage downloads and verifies them).

    ``tag``: the ``pretrained`` value that selects it; ``sha256``: the pinned hex digest of the file at ``url``, or
    None where the server announces it at download time (Hugging Face LFS files: the X-Linked-Etag header);
    ``format``: 'openai_jit' (OpenAI's TorchScript archive, converted to a plain state dict as fetch_backbone does),
    'safetensors', or 'torch' (a plain pickle of tensors, ``torch.load(weights_only=True)``).
    """

    tag: str
    url: str
    filename: str
    sha256: str | None
    format: str
    licence: str
    citation: str


WEIGHTS_FORMATS = ("openai_jit", "safetensors", "torch")


@dataclass(frozen=True)
class BackboneSpec:
    """What the zoo knows of a registered backbone without building it, registered with its builder: ``model``
    (the library's model name: open_clip's, timm's or SAM's registry key), its ``facts``, its official weights
    ``releases``, ``convert_state_dict`` (the tensors of any accepted weights file -> the state dict its builder
    takes; idempotent: converting a converted state dict changes nothing), ``accepted``: the published files it
    reads, one line each (for messages and the docs), and ``side_files``: files placed by hand that it reads
    besides its weights (SigLIP 2's tokenizer), whose SHA-256 the fetch stage records in the weights manifest so
    that replacing one re-runs what the backbone computed."""

    model: str
    facts: BackboneFacts
    releases: tuple[WeightsRelease, ...]
    convert_state_dict: Callable[[object], dict[str, torch.Tensor]]
    accepted: tuple[str, ...]
    side_files: tuple[str, ...] = ()  # files placed by hand it reads besides its weights (repository-relative)


def find_release(releases: tuple[WeightsRelease, ...], tag: str, *, backbone: str) -> WeightsRelease:
    """The release tagged ``tag``; BackboneError listing the tags there are."""
    for release in releases:
        if release.tag == tag:
            return release
    raise BackboneError(f"backbone {backbone!r} has no release {tag!r}; releases are {[r.tag for r in releases]}")


def unwrap_state_dict(state, *, source: str = "the weights") -> dict[str, torch.Tensor]:
    """A loaded checkpoint's tensors: a top-level 'state_dict' or 'model' entry unwrapped and a 'module.' prefix
    on every key removed (a DataParallel save); BackboneError unless it is a mapping of names to tensors."""
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"{source} does not hold a state dict (a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return dict(state)


def check_state_dict(
    expected: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor], *, backbone: str, source: str = ""
) -> None:
    """BackboneError naming the missing, unexpected and mis-shaped keys of ``state_dict`` against ``expected`` (a
    module's own state dict; ``source`` names the file in the message)."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{key} {tuple(state_dict[key].shape)} != {tuple(expected[key].shape)}"
        for key in set(state_dict) & set(expected)
        if tuple(state_dict[key].shape) != tuple(expected[key].shape)
    )
    if missing or unexpected or mismatched:
        raise BackboneError(
            f"{source or 'the weights'} do not match backbone {backbone!r}: {len(missing)} missing key(s) "
            f"{preview(missing)}, {len(unexpected)} unexpected key(s) {preview(unexpected)}, {len(mismatched)} "
            f"shape mismatch(es) {preview(mismatched)}"
        )


def instantiate(
    create: Callable[[str], nn.Module],
    *,
    backbone: str,
    init_seed: int,
    state_dict: Mapping[str, torch.Tensor] | None,
    init: Callable[[nn.Module], None] | None = None,
    source: str = "",
) -> nn.Module:
    """The library model ``create(device)`` on the CPU, float32, with its weights.

    ``state_dict`` None: created under the RNG seeded by ``init_seed`` (the global RNG is left as it was), then
    ``init(model)`` (the backbone's informative random init) under the same RNG. Otherwise the state dict is checked
    against a skeleton built on the meta device (BackboneError naming missing, unexpected and mis-shaped keys: no
    weights are drawn for a mismatch) and loaded strictly; a model without buffers is the skeleton with the weights
    assigned (as float32 copies), so no random weights are drawn for nothing.
    """
    if state_dict is not None:
        skeleton = create("meta")
        expected = skeleton.state_dict()
        check_state_dict(expected, state_dict, backbone=backbone, source=source)
        weights = {
            key: value.to(device="cpu", dtype=expected[key].dtype, copy=True) for key, value in state_dict.items()
        }
        if not any(True for _ in skeleton.buffers()):
            skeleton.load_state_dict(weights, strict=True, assign=True)
            return skeleton
    with seeded(init_seed):
        model = create("cpu")
        if state_dict is None and init is not None:
            init(model)
    if state_dict is not None:
        model.load_state_dict(weights, strict=True)
    return model


def preview(items: list[str], limit: int = 8) -> list[str]:
    """The first ``limit`` items, and how many more there are."""
    return items[:limit] + ([f"... {len(items) - limit} more"] if len(items) > limit else [])


@contextlib.contextmanager
def seeded(init_seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded by ``init_seed``, restoring the global RNG afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        yield


# ------------------------------------------------------------------------------------------ the module
@dataclass(frozen=True)
class LayerSpec(ClipLayerSpec):
    """One exposed feature map: ``channels``, the nominal ``stride`` (network-input pixels per cell: the patch size
    of a ViT; on the crop a cell may cover a different number of pixels where the input is resized) and ``grid``
    (h, w): its cells on the canonical 416 x 544 crop."""

    grid: tuple[int, int]


class FrozenBackbone(nn.Module):
    """Frozen (requires_grad False, always eval) image encoder with a uniform interface.

    Subclasses set the attributes below in ``__init__``, call :meth:`freeze` at its end, and implement
    :meth:`forward_features`, :meth:`preprocess` where the image is resized or padded, and (text backbones)
    :meth:`encode_text` and ``embed_dim``.
    """

    name: str
    input_size: tuple[int, int]  # network input H x W for the 416 x 544 crop
    mean: tuple[float, float, float]  # network input normalisation, on the [0, 1] scale
    std: tuple[float, float, float]
    layer_specs: dict[str, LayerSpec]  # every exposed layer
    class_token: bool = False  # forward_features also returns f"{layer}_cls" (B x C) for block layers
    text: bool = False  # has a CLIP text tower (encode_text, embed_dim)
    zeroshot_layer: str | None = None  # the layer the DepthCLIP head reads (text backbones)
    embed_dim: int = 0  # text backbones: the joint image-text embedding size

    def freeze(self) -> None:
        """No parameter requires gradients; eval mode."""
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> FrozenBackbone:  # frozen: always eval
        return super().train(False)

    @property
    def library_model(self) -> nn.Module:
        """The library module whose state dict the backbone's builder takes (``build(state_dict=...)``)."""
        raise NotImplementedError

    @property
    def layers(self) -> tuple[str, ...]:
        """Every exposed layer name, in network order."""
        return tuple(self.layer_specs)

    def check_layers(self, layers: tuple[str, ...]) -> None:
        """BackboneError listing the valid layers unless each of ``layers`` is an exposed layer (once)."""
        check_layer_names(tuple(layers), self.layers, backbone=self.name)

    def check_crop(self, crop: torch.Tensor) -> None:
        """BackboneError unless ``crop`` is B x 3 x 416 x 544 (the DepthCLIP crop) or B x 3 x 480 x 640 (the
        frame)."""
        if crop.ndim != 4 or crop.shape[1] != 3 or tuple(crop.shape[-2:]) not in PREPROCESS_SIZES:
            raise BackboneError(
                f"{self.name}: preprocess expects the B x 3 x {CROP_SIZE[0]} x {CROP_SIZE[1]} crop or the "
                f"B x 3 x {FRAME_SIZE[0]} x {FRAME_SIZE[1]} frame in [0, 1], got {tuple(crop.shape)}"
            )

    def check_input(self, x: torch.Tensor, multiple: int) -> None:
        """ValueError unless ``x`` is B x 3 x H x W with H and W multiples of ``multiple``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise BackboneError(f"{self.name}: expected B x 3 x H x W network input, got {tuple(x.shape)}")
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise BackboneError(
                f"{self.name}: input height and width must be multiples of {multiple}, got {tuple(x.shape[-2:])}"
            )

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W on the [0, 1] scale -> (x - mean) / std with the backbone's statistics."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return (x - mean) / std

    def preprocess(self, crop: torch.Tensor) -> torch.Tensor:
        """B x 3 x 416 x 544 float in [0, 1] (the cropped RGB) -> B x 3 x H x W network input (``input_size``);
        the B x 3 x 480 x 640 frame by the same rule. By default the image as it is (no resize: the stride divides
        both sizes), normalised with the backbone's ``mean`` / ``std`` (CLIP ViT-B/16, SigLIP 2, PE-Core,
        C-RADIOv3); backbones that resize or pad override it."""
        self.check_crop(crop)
        return self.normalise(crop.float())

    def image_maps(self, feats: dict[str, torch.Tensor], image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """:meth:`forward_features`' output for the preprocessed image of ``image_size`` (H, W: the crop or the
        frame) -> the cells that cover that image: every map as it is, except where the network input pads the
        image beyond what ``forward_features`` drops by itself (SAM)."""
        return feats

    def forward_features(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """B x 3 x H x W network input -> {layer: B x C x h x w float, plus f"{layer}_cls": B x C where
        ``class_token``} for ``layers``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, layers: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        return self.forward_features(x, self.layers if layers is None else layers)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """prompts: K strings -> K x D text embeddings, L2-normalised (D = ``embed_dim``); text backbones only."""
        raise BackboneError(f"backbone {self.name!r} has no text tower")


def parameter_count(module: nn.Module) -> int:
    """The number of parameter elements of ``module``."""
    return sum(p.numel() for p in module.parameters())
