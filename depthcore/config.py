"""Typed, validated configuration objects built from the params dict.

`depthcore` never reads ``params.yaml`` itself: a stage script loads the YAML, picks the sections
it declares in ``dvc.yaml`` and calls ``<Config>.from_params(section)``. Every config is a frozen
dataclass; unknown keys, wrong types and out-of-range values raise :class:`ConfigError` with the
dotted key that was wrong and what would be accepted.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from depthcore.errors import DepthcoreError

DATA_SOURCES = ("nyuv2", "synthetic")


class ConfigError(DepthcoreError, ValueError):
    """A params value is missing, unknown or invalid. The message names the dotted key."""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int, float, str, bool, tuple[X, ...], X | None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is tuple:
        (inner, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"params '{key}': expected a list, got {value!r}")
        return tuple(_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"params '{key}': expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"params '{key}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"params '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"params '{key}': expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return tp.from_params(value, prefix=key)
    raise TypeError(f"unsupported config annotation {tp!r} for '{key}'")


class _Section:
    """Mixin: ``from_params`` for a frozen dataclass, with unknown-key and type checks."""

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, prefix: str = "") -> Self:
        params = {} if params is None else params
        name = prefix or cls.__name__
        if not isinstance(params, Mapping):
            raise ConfigError(f"params '{name}': expected a mapping, got {params!r}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(params) - set(fields))
        if unknown:
            raise ConfigError(f"params '{name}': unknown key(s) {unknown}; valid keys are {sorted(fields)}")
        kwargs = {}
        for key, value in params.items():
            kwargs[key] = _coerce(value, hints[key], f"{prefix}.{key}" if prefix else key)
        obj = cls(**kwargs)
        obj.validate(prefix)
        return obj

    def validate(self, prefix: str) -> None:  # overridden where there is more to check
        """Raise ConfigError if the values contradict each other."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples become lists), e.g. for checkpoints and metrics files."""
        return plain(dataclasses.asdict(self))  # type: ignore[call-overload]


def plain(value: Any) -> Any:
    """JSON-shaped copy: mappings -> dicts with str keys, tuples -> lists (for checkpoints, attrs, comparisons)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _choice(value: str, valid: tuple[str, ...], key: str) -> None:
    if value not in valid:
        raise ConfigError(f"params '{key}': unknown value {value!r}; valid values are {list(valid)}")


def _positive(value: float, key: str) -> None:
    if not value > 0:
        raise ConfigError(f"params '{key}': must be > 0, got {value!r}")


def _at_least_one(section: Any, prefix: str, *keys: str) -> None:
    """Every integer ``section.<key>`` must be >= 1."""
    for key in keys:
        if getattr(section, key) < 1:
            raise ConfigError(f"params '{prefix}.{key}': must be >= 1, got {getattr(section, key)}")


def _layer_list(layers: tuple[str, ...], key: str) -> None:
    """A non-empty list of distinct CLIP layer names."""
    if not layers:
        raise ConfigError(f"params '{key}': list at least one of {list(CLIP_LAYERS)}")
    for layer in layers:
        _choice(layer, CLIP_LAYERS, key)
    if len(set(layers)) != len(layers):
        raise ConfigError(f"params '{key}': duplicate layer names {list(layers)}")


# --------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class NYUv2Config(_Section):
    """Where the official NYU Depth v2 labelled set and its split file come from."""

    url: str = "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
    splits_url: str = "http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat"


@dataclass(frozen=True)
class SyntheticConfig(_Section):
    """Rendered indoor rooms: ``images`` views, ``views_per_room`` per room (= scene)."""

    images: int = 64
    seed: int = 0
    height: int = 480
    width: int = 640
    views_per_room: int = 4

    def validate(self, prefix: str) -> None:
        _at_least_one(self, prefix, "images", "height", "width", "views_per_room")
        if self.height < 32 or self.width < 32:
            raise ConfigError(f"params '{prefix}': images must be at least 32x32 pixels")


@dataclass(frozen=True)
class DataConfig(_Section):
    """``data`` section: the source and how the validation split is carved (whole scenes)."""

    source: str = "nyuv2"
    val_fraction: float = 0.1
    split_seed: int = 0
    nyuv2: NYUv2Config = field(default_factory=NYUv2Config)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def validate(self, prefix: str) -> None:
        _choice(self.source, DATA_SOURCES, f"{prefix}.source")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"params '{prefix}.val_fraction': must be in [0, 1), got {self.val_fraction}")


# --------------------------------------------------------------------------------------------- eval
@dataclass(frozen=True)
class EvalConfig(_Section):
    """``eval`` section. Depth range in metres; the Eigen crop is fixed (depthcore.geometry)."""

    min_depth: float = 1e-3
    max_depth: float = 10.0
    median_scaling: bool = False
    figure_images: int = 4

    def validate(self, prefix: str) -> None:
        _positive(self.min_depth, f"{prefix}.min_depth")
        if self.max_depth <= self.min_depth:
            raise ConfigError(
                f"params '{prefix}.max_depth' ({self.max_depth}) must exceed min_depth ({self.min_depth})"
            )
        if self.figure_images < 0:
            raise ConfigError(f"params '{prefix}.figure_images': must be >= 0")


# ------------------------------------------------------------------------------------------- models
CLIP_LAYERS = ("stem", "layer1", "layer2", "layer3", "layer4")
# Cached by default: layer2..layer4 (strides 8, 16, 32) are 12.7 MB/image raw float16 for both views,
# so the NYUv2 store (1449 images) stays under 20 GB even with no compression at all; stem and layer1
# add 29 MB/image raw (see benchmarks/clip_features.py) and fit only small datasets.
CLIP_DEFAULT_CACHE_LAYERS = ("layer2", "layer3", "layer4")
DEPTHCLIP_DENSE = ("depthclip", "maskclip")


@dataclass(frozen=True)
class ClipConfig(_Section):
    """``clip`` section. ``pretrained``: 'openai', 'none' (seeded random init) or a checkpoint path."""

    model: str = "RN50-quickgelu"
    pretrained: str = "openai"
    cache_layers: tuple[str, ...] = CLIP_DEFAULT_CACHE_LAYERS
    batch_size: int = 4
    init_seed: int = 0

    def validate(self, prefix: str) -> None:
        _layer_list(self.cache_layers, f"{prefix}.cache_layers")
        _at_least_one(self, prefix, "batch_size")
        if not self.pretrained:
            raise ConfigError(f"params '{prefix}.pretrained': give 'openai', 'none' or a checkpoint path")


@dataclass(frozen=True)
class DepthclipConfig(_Section):
    """``depthclip`` section: the zero-shot head (prompt, depth classes, bins in metres)."""

    template: str = "This {object} is {depth_class}"
    object: str = "object"
    classes: tuple[str, ...] = (
        "giant",
        "extremely close",
        "close",
        "not in distance",
        "a little remote",
        "far",
        "unseen",
    )
    bins: tuple[float, ...] = (1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00)
    temperature: float = 0.1
    dense: str = "depthclip"

    def validate(self, prefix: str) -> None:
        _choice(self.dense, DEPTHCLIP_DENSE, f"{prefix}.dense")
        _positive(self.temperature, f"{prefix}.temperature")
        if len(self.classes) != len(self.bins) or len(self.bins) < 2:
            raise ConfigError(
                f"params '{prefix}': {len(self.classes)} classes but {len(self.bins)} bins; "
                "give one bin depth (metres) per class, at least two"
            )
        if "{depth_class}" not in self.template:
            raise ConfigError(f"params '{prefix}.template' must contain '{{depth_class}}', got {self.template!r}")


SAM_MODELS = ("vit_b", "vit_l", "vit_h")
SEGMENT_METHODS = ("sam", "gt", "felzenszwalb", "none")


@dataclass(frozen=True)
class SamConfig(_Section):
    """``sam`` section. ``pretrained``: 'official', 'none' (seeded random init) or a checkpoint path.
    The remaining keys are SamAutomaticMaskGenerator's knobs."""

    model: str = "vit_b"
    pretrained: str = "official"
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    min_mask_region_area: int = 100
    init_seed: int = 0

    def validate(self, prefix: str) -> None:
        _choice(self.model, SAM_MODELS, f"{prefix}.model")
        _at_least_one(self, prefix, "points_per_side", "points_per_batch")
        if self.min_mask_region_area < 0:
            raise ConfigError(f"params '{prefix}.min_mask_region_area': must be >= 0")
        for key in ("pred_iou_thresh", "stability_score_thresh"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"params '{prefix}.{key}': must be in [0, 1], got {getattr(self, key)}")


@dataclass(frozen=True)
class FelzenszwalbConfig(_Section):
    """skimage.segmentation.felzenszwalb settings."""

    scale: float = 200.0
    sigma: float = 0.8
    min_size: int = 400

    def validate(self, prefix: str) -> None:
        _positive(self.scale, f"{prefix}.scale")
        if self.sigma < 0 or self.min_size < 0:
            raise ConfigError(f"params '{prefix}': sigma and min_size must be >= 0")


@dataclass(frozen=True)
class SegmentsConfig(_Section):
    """``segments`` section: which segmenter produces the per-pixel segment map."""

    method: str = "sam"
    felzenszwalb: FelzenszwalbConfig = field(default_factory=FelzenszwalbConfig)

    def validate(self, prefix: str) -> None:
        _choice(self.method, SEGMENT_METHODS, f"{prefix}.method")


# ------------------------------------------------------------------------------------ training
ADAPTER_NAMES = ("clip_adapter", "coarse_refine", "eigen", "msa")
LOSS_NAMES = ("l1", "l2", "silog")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")
COARSE_MODES = ("coarse", "coarse_refined")
MSA_SEGMENTS = ("none", "color", "boundary", "pool")


@dataclass(frozen=True)
class TrainConfig(_Section):
    """``train`` section: the optimisation loop. ``lr`` is the peak learning rate; ``schedule`` is
    applied per step (``cosine`` decays to 0 over all steps, ``step`` multiplies by ``gamma`` every
    ``step_epochs``). ``amp`` is used on CUDA only. ``num_workers``: DataLoader worker processes."""

    epochs: int = 20
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9
    schedule: str = "cosine"
    step_epochs: int = 10
    gamma: float = 0.1
    flip: bool = True
    amp: bool = True
    num_workers: int = 0
    grad_clip: float = 0.0

    def validate(self, prefix: str) -> None:
        _choice(self.optimizer, OPTIMIZERS, f"{prefix}.optimizer")
        _choice(self.schedule, SCHEDULES, f"{prefix}.schedule")
        _at_least_one(self, prefix, "epochs", "batch_size", "step_epochs")
        _positive(self.lr, f"{prefix}.lr")
        for key in ("weight_decay", "grad_clip", "momentum"):
            if getattr(self, key) < 0:
                raise ConfigError(f"params '{prefix}.{key}': must be >= 0, got {getattr(self, key)}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"params '{prefix}.gamma': must be in (0, 1], got {self.gamma}")
        if self.num_workers < 0:
            raise ConfigError(f"params '{prefix}.num_workers': must be >= 0")


@dataclass(frozen=True)
class ClipAdapterConfig(_Section):
    """``adapters.clip_adapter``: CLIP-Adapter bottleneck MLPs (``reduction`` = in/hidden width,
    ``ratio`` = weight of the adapted feature in the residual mix) on the image and/or text side."""

    image: bool = True
    text: bool = True
    reduction: int = 4
    ratio: float = 0.2

    def validate(self, prefix: str) -> None:
        if not (self.image or self.text):
            raise ConfigError(f"params '{prefix}': image and text are both false, so nothing would be trained")
        _at_least_one(self, prefix, "reduction")
        if not 0.0 <= self.ratio <= 1.0:
            raise ConfigError(f"params '{prefix}.ratio': must be in [0, 1], got {self.ratio}")


@dataclass(frozen=True)
class CoarseRefineConfig(_Section):
    """``adapters.coarse_refine``: zero-shot depth (pooled to ``input_stride``) -> fully connected
    layers (``hidden`` units) -> coarse map at ``coarse_stride``; ``coarse_refined`` adds the fine
    stack (``fine_channels``) on RGB + coarse map, output at stride 4."""

    mode: str = "coarse_refined"
    input_stride: int = 16
    hidden: int = 1024
    coarse_stride: int = 8
    fine_channels: int = 64

    def validate(self, prefix: str) -> None:
        _choice(self.mode, COARSE_MODES, f"{prefix}.mode")
        _at_least_one(self, prefix, "input_stride", "hidden", "coarse_stride", "fine_channels")


@dataclass(frozen=True)
class EigenConfig(_Section):
    """``adapters.eigen``: Eigen et al.'s coarse conv net on RGB (``coarse_channels`` of its five
    convs, ``hidden`` FC units) -> coarse map at ``coarse_stride``; the fine stack as coarse_refine."""

    mode: str = "coarse_refined"
    coarse_channels: tuple[int, ...] = (96, 256, 384, 384, 256)
    hidden: int = 1024
    coarse_stride: int = 8
    fine_channels: int = 64

    def validate(self, prefix: str) -> None:
        _choice(self.mode, COARSE_MODES, f"{prefix}.mode")
        if len(self.coarse_channels) != 5 or min(self.coarse_channels) < 1:
            raise ConfigError(
                f"params '{prefix}.coarse_channels': give five positive widths, got {list(self.coarse_channels)}"
            )
        _at_least_one(self, prefix, "hidden", "coarse_stride", "fine_channels")


@dataclass(frozen=True)
class MsaConfig(_Section):
    """``adapters.msa``: U-Net decoder over RGB and the CLIP ``layers`` (deepest first up to full
    resolution). ``clip_init_weight``: 0 = decoder output alone, > 0 = initial weight of the zero-shot
    depth that the decoder refines (a learned scale). ``segments``: none | color | boundary | pool."""

    layers: tuple[str, ...] = CLIP_DEFAULT_CACHE_LAYERS  # the published MSA also reads stem and layer1
    decoder_channels: int = 256
    rgb_channels: int = 16
    clip_init_weight: float = 1.0
    segments: str = "none"

    def validate(self, prefix: str) -> None:
        _choice(self.segments, MSA_SEGMENTS, f"{prefix}.segments")
        _layer_list(self.layers, f"{prefix}.layers")
        _at_least_one(self, prefix, "decoder_channels", "rgb_channels")
        if self.clip_init_weight < 0:
            raise ConfigError(f"params '{prefix}.clip_init_weight': must be >= 0, got {self.clip_init_weight}")


@dataclass(frozen=True)
class AdaptersConfig(_Section):
    """``adapters`` section: one sub-section of settings per adapter (only the chosen one is used)."""

    clip_adapter: ClipAdapterConfig = field(default_factory=ClipAdapterConfig)
    coarse_refine: CoarseRefineConfig = field(default_factory=CoarseRefineConfig)
    eigen: EigenConfig = field(default_factory=EigenConfig)
    msa: MsaConfig = field(default_factory=MsaConfig)

    def get(self, name: str) -> _Section:
        """The settings of adapter ``name``."""
        _choice(name, ADAPTER_NAMES, "adapter")
        return getattr(self, name)


def check_training_configs(
    *, adapter: str, loss: str, adapters: AdaptersConfig, segments: SegmentsConfig, clip: ClipConfig
) -> None:
    """Raise ConfigError (before any work) for an unknown adapter / loss or contradicting settings."""
    if not isinstance(adapter, str):
        raise ConfigError(
            f"params 'adapter': expected a name, got {adapter!r}; valid adapters are {list(ADAPTER_NAMES)}"
        )
    _choice(adapter, ADAPTER_NAMES, "adapter")
    if not isinstance(loss, str):
        raise ConfigError(f"params 'loss': expected a name, got {loss!r}; valid losses are {list(LOSS_NAMES)}")
    _choice(loss, LOSS_NAMES, "loss")
    cached = set(clip.cache_layers)
    if adapter == "msa":
        msa = adapters.msa
        if msa.segments != "none" and segments.method == "none":
            raise ConfigError(
                f"params 'adapters.msa.segments' is {msa.segments!r} but 'segments.method' is 'none': there is no "
                "segment map to use. Set segments.method (sam, gt, felzenszwalb) or adapters.msa.segments: none"
            )
        missing = [layer for layer in msa.layers if layer not in cached]
        if missing:
            raise ConfigError(
                f"params 'adapters.msa.layers' uses {missing}, which 'clip.cache_layers' ({list(clip.cache_layers)}) "
                "does not cache. Add them to clip.cache_layers or drop them from adapters.msa.layers"
            )
    if adapter == "clip_adapter" and "layer4" not in cached:
        raise ConfigError(
            "params 'adapter' is clip_adapter, which needs layer4 features, but 'clip.cache_layers' "
            f"({list(clip.cache_layers)}) lacks layer4"
        )
