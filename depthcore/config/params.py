"""The one typed, validated object for the whole ``params.yaml``.

Every stage validates the whole file (every section and the cross-section rules) before any work,
then reads only the sections it declares in ``dvc.yaml``. Validation only accepts or refuses: it
passes every value through unchanged (a test checks the round trip) and holds no defaults, so no
stage depends on this module and editing it re-runs nothing. Errors name the dotted key, the bad
value and what would be accepted.

``depthcore`` never reads ``params.yaml`` on its own: a stage (or a test) passes the path or the dict.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, create_model, model_validator

from depthcore.config.overrides import with_overrides
from depthcore.data.splits import n_test_scenes
from depthcore.errors import ConfigError
from depthcore.geometry.frame import CLIP_LAYERS
from depthcore.losses.registry import LOSSES
from depthcore.models.adapters.registry import ADAPTERS
from depthcore.models.backbones.zoo.registry import BACKBONES, backbone_facts
from depthcore.section import Section
from depthcore.training.schedules import FINAL_FRACTION_SCHEDULES, WARMUP_SCHEDULES

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=1)]
QUICKGELU_SUFFIX = "-quickgelu"  # open_clip's model names with OpenAI's activation (x * sigmoid(1.702 x))
Layer = Literal["stem", "layer1", "layer2", "layer3", "layer4"]
FeatureRoute = Literal["cached", "live"]  # params ``features``: docs/pipeline.md "Live features"
EvalFrame = Literal["crop", "full"]  # params ``eval.frame``: depthcore.geometry.frame.EVAL_FRAMES
assert typing.get_args(Layer) == CLIP_LAYERS


# --------------------------------------------------------------------------------------------- data
class NYUv2Source(Section):
    """Where the official NYU Depth v2 labelled set and its split file come from."""

    url: str
    splits_url: str


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class NYUv2RawSource(Section):
    """Where BTS's raw-frame training set comes from (docs/data_raw.md): the archive ``sync.zip`` and the list of
    the 24,231 training frames, each with its size in bytes and SHA-256 (null: not published; the first
    download's hash is recorded beside the file and enforced). A file placed at data/raw/ by hand is verified
    the same way. The test images are the labelled set of ``data.nyuv2``."""

    archive_url: str
    archive_size: Annotated[int, Field(ge=1)] | None
    archive_sha256: Sha256 | None
    list_url: str
    list_size: Annotated[int, Field(ge=1)] | None
    list_sha256: Sha256 | None


class SyntheticSource(Section):
    """Rendered 480 x 640 indoor rooms: ``images`` views, ``views_per_room`` per room (= scene)."""

    images: Count
    seed: int
    views_per_room: Count


DataSourceName = Literal["nyuv2", "nyuv2_raw", "synthetic"]


class DataSection(Section):
    """``data``: the source and the validation carve (whole training scenes, seeded)."""

    source: DataSourceName
    val_fraction: Annotated[float, Field(ge=0, lt=1)]
    split_seed: int
    nyuv2: NYUv2Source
    nyuv2_raw: NYUv2RawSource
    synthetic: SyntheticSource


class EvalSection(Section):
    """``eval``: depth range in metres (the Eigen crop is fixed, depthcore.geometry.frame); ``frame``: what the
    evaluate stage predicts, ``crop`` the DepthCLIP crop (the paper's; pixels of the Eigen crop outside it do
    not count) or ``full`` the whole 480 x 640 frame (the references'; probes on live features only)."""

    min_depth: Positive
    max_depth: Positive
    median_scaling: bool
    figure_images: Annotated[int, Field(ge=0)]
    frame: EvalFrame


# ------------------------------------------------------------------------------------------- models
class ClipSection(Section):
    """``clip``: ``pretrained`` is 'openai', 'none' (seeded random init) or a file under weights/backbone/."""

    model: str
    pretrained: Annotated[str, Field(min_length=1)]
    init_seed: int

    @model_validator(mode="after")
    def _openai_needs_quickgelu(self) -> ClipSection:
        # OpenAI trained every CLIP with QuickGELU; open_clip's plain names (RN50) build exact GELU, which would
        # load those weights into the wrong activation without any error.
        if self.pretrained == "openai" and not self.model.endswith(QUICKGELU_SUFFIX):
            raise ValueError(
                f"'clip.model' {self.model!r} uses exact GELU, but OpenAI's weights (clip.pretrained: openai) were "
                f"trained with QuickGELU: set clip.model: {self.model}{QUICKGELU_SUFFIX} (the same weights with their "
                "own activation)"
            )
        return self

    cache_layers: tuple[Layer, ...]


class DepthclipSection(Section):
    """``depthclip``: the zero-shot head (prompt, depth classes, bins in metres)."""

    template: str
    object: str
    classes: tuple[str, ...]
    bins: tuple[Positive, ...]
    temperature: Positive
    dense: Literal["depthclip", "maskclip"]


class SamSection(Section):
    """``sam``: ``pretrained`` is 'official', 'none' or a file under weights/sam/; then the mask
    generator's knobs."""

    model: Literal["vit_b", "vit_l", "vit_h"]
    pretrained: Annotated[str, Field(min_length=1)]
    init_seed: int
    points_per_side: Count
    pred_iou_thresh: Fraction
    stability_score_thresh: Fraction
    min_mask_region_area: Annotated[int, Field(ge=0)]


class FelzenszwalbSection(Section):
    """skimage.segmentation.felzenszwalb settings."""

    scale: Positive
    sigma: NonNegative
    min_size: Annotated[int, Field(ge=0)]


class SegmentsSection(Section):
    """``segments``: which segment map the adapters see (``none``: no segment input)."""

    method: Literal["sam", "gt", "felzenszwalb", "none"]
    felzenszwalb: FelzenszwalbSection


OptimizerName = Literal["adam", "adamw", "sgd"]
ADAM_OPTIMIZERS = ("adam", "adamw")  # read beta2
ScheduleName = Literal["constant", "cosine", "step", "warmup_cosine", "mmcv_cosine", "onecycle"]
assert set(WARMUP_SCHEDULES + FINAL_FRACTION_SCHEDULES) <= set(typing.get_args(ScheduleName))
RecipeName = Literal["dinov2", "dinov3", "probe3d"]  # train.preset values that run recipes.<name>


class TrainSection(Section):
    """``train``: the optimisation loop. ``preset: published`` uses the chosen adapter's published settings
    (``presets.<adapter>``: optimizer, lr, weight decay, momentum, schedule, epochs, batch size, smoothness)
    instead of the values here; ``custom`` uses these. ``max_epochs`` caps the epochs either way (null: no
    cap). ``select``: the checkpoint kept (best on the val split, or the last epoch). ``color_jitter``: each
    training image's RGB (the adapter's input, not the cached features) scaled by U(1 - j, 1 + j). ``flip``:
    average (the authors': image and mirror image forwarded with gradients, the loss on the mean of the two
    predictions flipped back), random (one pass on the image or its mirror, with probability 1/2 each) or none.
    AMP on CUDA only. ``preset: dinov2 | dinov3 | probe3d`` runs the reference's own recipe (``recipes.<name>``,
    its length converted to epochs of this training set at run time, and its loss). ``warmup_epochs`` (may be
    fractional) and ``final_lr_fraction``: the warm-up schedules' (depthcore.training.schedules); ``beta2``: Adam's
    second-moment decay (adam, adamw; beta1 is torch's 0.9, or the onecycle schedule's)."""

    preset: Literal["published", "custom"] | RecipeName
    max_epochs: Annotated[int, Field(ge=1)] | None
    select: Literal["val", "last"]
    color_jitter: Annotated[float, Field(ge=0, lt=1)]
    smoothness: NonNegative
    epochs: Count
    batch_size: Count
    lr: Positive
    weight_decay: NonNegative
    optimizer: OptimizerName
    momentum: NonNegative
    beta2: Annotated[float, Field(ge=0, lt=1)]
    schedule: ScheduleName
    step_epochs: Count
    gamma: Annotated[float, Field(gt=0, le=1)]
    warmup_epochs: NonNegative
    final_lr_fraction: Fraction
    flip: Literal["average", "random", "none"]
    amp: bool
    grad_clip: NonNegative


class TrainPreset(Section):
    """One published training preset (``presets.<adapter>``, or one part of it): the train keys it sets.
    ``momentum`` is set for sgd and null otherwise, ``beta2`` for adam and adamw; ``step_epochs`` and ``gamma`` for
    the step schedule and null otherwise; ``warmup_epochs`` for the warm-up schedules (warmup_cosine, mmcv_cosine,
    onecycle) and ``final_lr_fraction`` for warmup_cosine and mmcv_cosine (a null key is not used by the preset's
    optimiser or schedule)."""

    epochs: Count
    batch_size: Count
    optimizer: OptimizerName
    lr: Positive
    weight_decay: NonNegative
    momentum: NonNegative | None
    beta2: Annotated[float, Field(ge=0, lt=1)] | None
    schedule: ScheduleName
    step_epochs: Count | None
    gamma: Annotated[float, Field(gt=0, le=1)] | None
    smoothness: NonNegative
    warmup_epochs: Positive | None
    final_lr_fraction: Fraction | None

    @model_validator(mode="after")
    def _set_exactly_what_is_used(self) -> TrainPreset:
        return _set_exactly_when_used(self, "warmup_epochs")

    def values(self) -> dict[str, Any]:
        """The train keys this preset sets (its null keys left out: the run does not use them)."""
        return {key: value for key, value in self.model_dump().items() if value is not None}


def _set_exactly_when_used(section, warmup_key: str):
    """``section`` (a preset or a recipe) if it sets exactly the keys its optimiser and schedule use, else
    ValueError naming them: momentum (sgd), step_epochs and gamma (step), ``warmup_key`` (the warm-up schedules),
    final_lr_fraction (warmup_cosine, mmcv_cosine)."""
    uses = {
        "momentum": section.optimizer == "sgd",
        "beta2": section.optimizer in ADAM_OPTIMIZERS,
        "step_epochs": section.schedule == "step",
        "gamma": section.schedule == "step",
        warmup_key: section.schedule in WARMUP_SCHEDULES,
        "final_lr_fraction": section.schedule in FINAL_FRACTION_SCHEDULES,
    }
    uses = {key: used for key, used in uses.items() if key in type(section).model_fields}
    wrong = [key for key, used in uses.items() if used != (getattr(section, key) is not None)]
    if wrong:
        raise ValueError(
            f"{wrong} must be set exactly when used: momentum for optimizer sgd, beta2 for adam and adamw, step_epochs "
            "and gamma for schedule "
            f"step, {warmup_key} for {list(WARMUP_SCHEDULES)}, final_lr_fraction for {list(FINAL_FRACTION_SCHEDULES)} "
            f"(null otherwise); this one has optimizer {section.optimizer}, schedule {section.schedule}"
        )
    return section


class Recipe(Section):
    """One reference's own training recipe (``recipes.<name>``, run by ``train.preset: <name>``): its length in
    ``iterations`` (optimiser steps) or ``epochs`` (exactly one set; iterations are converted to epochs of the
    actual training set at run time: round(iterations / steps per epoch), at least 1), batch size, optimiser, lr,
    weight decay, schedule with ``warmup`` in the length's unit (null without a warm-up) and
    ``final_lr_fraction``, its ``loss`` (a loss name; its settings are ``losses.<loss>``) and ``grad_clip`` (max
    gradient norm, 0: off)."""

    iterations: Count | None
    epochs: Count | None
    batch_size: Count
    optimizer: OptimizerName
    lr: Positive
    weight_decay: NonNegative
    momentum: NonNegative | None
    beta2: Annotated[float, Field(ge=0, lt=1)] | None
    schedule: ScheduleName
    warmup: Positive | None
    final_lr_fraction: Fraction | None
    loss: str
    grad_clip: NonNegative

    @model_validator(mode="after")
    def _one_length_and_what_is_used(self) -> Recipe:
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError("set exactly one of iterations and epochs (the other null): the recipe's length")
        if self.schedule == "step":
            raise ValueError("a recipe has no step schedule (no step_epochs, gamma): use a train.preset: custom run")
        if self.loss not in LOSSES.names():
            raise ValueError(f"loss {self.loss!r} is not a loss; valid values are {LOSSES.names()}")
        return _set_exactly_when_used(self, "warmup")


class RecipesSection(Section):
    """``recipes``: the references' own training recipes, by ``train.preset`` name (docs/probes.md)."""

    dinov2: Recipe
    dinov3: Recipe
    probe3d: Recipe


assert tuple(RecipesSection.model_fields) == typing.get_args(RecipeName)


class PairsSection(Section):
    """``pairs``: the second view of every image, for losses that read one (the pairs stage). ``method``: where
    the views come from (dataset: the dataset's own; homography: the paper's in-plane warp; reproject: rendered
    from ground-truth depth, an upper bound); the rest seed the generated motions and bound them."""

    method: Literal["dataset", "homography", "reproject"]
    seed: int
    max_rotation_deg: Annotated[float, Field(gt=0, le=45)]
    max_shift_px: Positive
    plane_depth_m: Positive
    max_translation_m: Annotated[float, Field(gt=0, le=2)]


class PaperSection(Section):
    """``paper``: the grid of paper/dvc.yaml: the seeds of every trained row, the rows (null: all of
    paper/rows.yaml), a cap on every run's epochs (null: the preset's), e.g. for smoke runs, and the data source of
    the field-protocol rows (a ``data.source`` value: the raw NYUv2 frames; offline, the rendered rooms)."""

    seeds: Annotated[tuple[int, ...], Field(min_length=1)]
    rows: tuple[str, ...] | None
    max_epochs: Annotated[int, Field(ge=1)] | None
    field_source: DataSourceName


class RuntimeSection(Section):
    """``runtime``: how fast, never what. No stage declares these: they cannot change an output (a GPU's
    floating point rounds differently from a CPU's). ``device``: auto (a GPU when torch can use one) | cuda
    (refused, with the reason, when it cannot) | cpu. ``num_workers``: DataLoader worker processes, or auto
    (from the CPU count, :func:`depthcore.device.loader_workers`)."""

    device: Literal["auto", "cuda", "cpu"]
    features_batch_size: Count
    sam_points_per_batch: Count
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"]
    eval_batch_size: Count


def _plugin_sections(registry, key: str):
    """The section of every plugin of ``registry`` (params ``<key>.<name>``) and the Literal of their names."""
    plugins = registry.all()
    section = create_model(
        f"{key.title()}Section",
        __base__=Section,
        __doc__=f"``{key}``: one section per registered {registry.kind} (only the chosen one is used).",
        **{name: (plugin.config, ...) for name, plugin in plugins.items()},
    )
    return section, Literal[tuple(plugins)]  # type: ignore[valid-type]


def _presets_section():
    """``presets``: the published training of every adapter: a :class:`TrainPreset`, or one per part for an
    adapter with ``preset_parts`` (the coarse/fine adapters: coarse, refine)."""
    fields = {}
    for name, plugin in ADAPTERS.all().items():
        parts = plugin.config.preset_parts
        if parts:
            doc = f"``presets.{name}``: one preset per part ({', '.join(parts)})."
            model = create_model(
                f"{name.title()}Presets", __base__=Section, __doc__=doc, **{p: (TrainPreset, ...) for p in parts}
            )
            fields[name] = (model, ...)
        else:
            fields[name] = (TrainPreset, ...)
    return create_model("PresetsSection", __base__=Section, __doc__=_presets_section.__doc__, **fields)


AdaptersSection, AdapterName = _plugin_sections(ADAPTERS, "adapters")
PresetsSection = _presets_section()
BackbonesSection, BackboneName = _plugin_sections(BACKBONES, "backbones")
LossesSection, LossName = _plugin_sections(LOSSES, "losses")


class Params(Section):
    """The whole ``params.yaml``."""

    data: DataSection
    eval: EvalSection
    clip: ClipSection
    depthclip: DepthclipSection
    sam: SamSection
    segments: SegmentsSection
    pairs: PairsSection
    backbone: BackboneName  # type: ignore[valid-type]
    features: FeatureRoute  # cached: backbone.zarr (the paper's); live: the backbone run in training
    backbones: BackbonesSection  # type: ignore[valid-type]
    seed: int
    adapter: AdapterName  # type: ignore[valid-type]
    loss: LossName  # type: ignore[valid-type]
    train: TrainSection
    presets: PresetsSection  # type: ignore[valid-type]
    recipes: RecipesSection
    adapters: AdaptersSection  # type: ignore[valid-type]
    losses: LossesSection  # type: ignore[valid-type]
    paper: PaperSection
    runtime: RuntimeSection

    @property
    def adapter_config(self):
        """The settings of the chosen adapter (``adapters.<adapter>``)."""
        return getattr(self.adapters, self.adapter)

    def preset(self, phase: str) -> TrainPreset:
        """The chosen adapter's published preset for training ``phase`` (``presets.<adapter>``, or its part)."""
        preset = getattr(self.presets, self.adapter)
        part = self.adapter_config.preset_part(phase)
        return preset if part is None else getattr(preset, part)

    @property
    def backbone_layers(self) -> tuple[str, ...]:
        """The layers of the selected backbone that the features store caches (clip_rn50: clip.cache_layers)."""
        if self.backbone == PAPER_BACKBONE:
            return self.clip.cache_layers
        return getattr(self.backbones, self.backbone).layers

    @property
    def recipe(self) -> Recipe | None:
        """The reference recipe ``train.preset`` runs (``recipes.<name>``); None under published or custom."""
        return getattr(self.recipes, self.train.preset, None)

    @property
    def loss_name(self) -> str:
        """The loss in effect: the recipe's under a recipe preset, else ``loss``."""
        return self.recipe.loss if self.recipe is not None else self.loss

    @property
    def loss_config(self):
        """The settings of the loss in effect (``losses.<loss_name>``)."""
        return getattr(self.losses, self.loss_name)

    @model_validator(mode="after")
    def _cross_section_rules(self) -> Params:
        for message in cross_section_errors(self):
            raise ValueError(message)
        return self


def cross_section_errors(p: Params) -> list[str]:
    """Settings of different sections that contradict each other, as messages naming the keys."""
    errors = []
    if p.eval.max_depth <= p.eval.min_depth:
        errors.append(f"params 'eval.max_depth' ({p.eval.max_depth}) must exceed 'eval.min_depth' ({p.eval.min_depth})")
    if len(p.depthclip.classes) != len(p.depthclip.bins) or len(p.depthclip.bins) < 2:
        errors.append(
            f"params 'depthclip': {len(p.depthclip.classes)} classes but {len(p.depthclip.bins)} bins; give one "
            "bin depth (metres) per class, at least two"
        )
    if "{depth_class}" not in p.depthclip.template:
        errors.append(f"params 'depthclip.template' must contain '{{depth_class}}', got {p.depthclip.template!r}")
    if len(set(p.clip.cache_layers)) != len(p.clip.cache_layers):
        errors.append(f"params 'clip.cache_layers': duplicate layer names {list(p.clip.cache_layers)}")
    errors += backbone_errors(p)
    cfg = p.adapter_config
    if "segments" in cfg.batch_keys() and p.segments.method == "none":
        errors.append(
            f"params 'adapters.{p.adapter}' reads a segment map but 'segments.method' is 'none': set "
            "segments.method (sam, gt, felzenszwalb) or switch the adapter's segment input off"
        )
    if p.data.val_fraction == 0 and p.train.select == "val":
        errors.append(
            "params 'data.val_fraction' is 0 but 'train.select' is 'val': there is no val split to select on; "
            "set train.select: last (train on every training image, keep the last epoch) or data.val_fraction > 0"
        )
    if p.loss_config.needs_pairs and p.pairs.method == "dataset" and p.data.source != "synthetic":
        errors.append(
            f"params 'pairs.method' is 'dataset' but data.source {p.data.source!r} has no second views (NYUv2's "
            f"labelled set and raw frames are single images), which loss {p.loss!r} reads: use pairs.method "
            "homography (the paper's) or reproject"
        )
    if "segments" in cfg.batch_keys() and p.segments.method == "gt" and p.data.source == "nyuv2_raw":
        errors.append(
            f"params 'segments.method' is 'gt' but data.source 'nyuv2_raw' has no object ids for its training frames "
            f"(raw frames are unlabelled), which adapter {p.adapter!r} reads: use segments.method sam or felzenszwalb"
        )
    if p.eval.frame == "full":
        errors += full_frame_errors(p)
    if p.data.source == "synthetic":
        errors += synthetic_split_errors(p.data)
    return errors


def full_frame_errors(p: Params) -> list[str]:
    """``eval.frame: full`` needs an adapter that predicts at any size (the probes) and live features (the cached
    ones are of the crop)."""
    errors = []
    if not p.adapter_config.any_size:
        sized = [a for a in ADAPTERS.names() if getattr(ADAPTERS.get(a).config, "any_size", False)]
        errors.append(
            f"params 'eval.frame' is 'full' but adapter {p.adapter!r} predicts the crop it was built for only (its "
            f"layers or inputs are of the 416 x 544 crop): set eval.frame: crop, or use an adapter of {sized}"
        )
    if p.features != "live":
        errors.append(
            "params 'eval.frame' is 'full' but 'features' is 'cached': the cached features are of the 416 x 544 crop; "
            "set features: live (the backbone then runs on the whole frame) or eval.frame: crop"
        )
    return errors


PAPER_BACKBONE = "clip_rn50"  # the paper's CLIP RN50: its settings are the clip section


def backbone_errors(p: Params) -> list[str]:
    """The chosen adapter against the selected backbone: the layers it reads cached (and exposed), a class token
    where it reads one, a text tower for the DepthCLIP head or zero-shot depth, a ResNet stem to compute."""
    cfg, name = p.adapter_config, p.backbone
    facts = backbone_facts(name)
    key = "clip.cache_layers" if name == PAPER_BACKBONE else f"backbones.{name}.layers"
    cached = p.backbone_layers
    anywhere = [a for a in ADAPTERS.names() if getattr(ADAPTERS.get(a).config, "any_backbone", False)]
    unexposed = [layer for layer in cfg.cached_layers() if layer not in facts.layers]
    errors = []
    if unexposed:
        errors.append(
            f"params 'adapters.{p.adapter}' reads the layer(s) {unexposed}, which backbone {name!r} does not have (it "
            f"exposes {list(facts.layers)}): use backbone clip_rn50 for it, or an adapter that takes any backbone "
            f"({anywhere}, with their layers set to the backbone's where they read any)"
        )
    missing = [layer for layer in cfg.cached_layers() if layer not in cached and layer not in unexposed]
    if missing:
        errors.append(
            f"params 'adapters.{p.adapter}' reads the layer(s) {missing}, which '{key}' ({list(cached)}) does not "
            f"cache: add them to {key} or change the adapter"
        )
    if cfg.class_token_layers() and not facts.class_token:
        errors.append(
            f"params 'adapters.{p.adapter}' reads class tokens, which backbone {name!r} does not have: set "
            f"adapters.{p.adapter}.class_token: false"
        )
    if (cfg.needs_head() or "zeroshot" in cfg.batch_keys()) and not facts.text:
        clips = [b for b in BACKBONES.names() if backbone_facts(b).text]
        errors.append(
            f"params 'adapters.{p.adapter}' reads DepthCLIP's zero-shot head or depth, which needs a text tower; "
            f"backbone {name!r} has none: use a CLIP backbone ({clips}) or an adapter without it"
        )
    if cfg.needs_shallow() and name != PAPER_BACKBONE:
        errors.append(
            f"params 'adapters.{p.adapter}' computes CLIP RN50's stem and layer1 itself, which backbone {name!r} does "
            f"not have: use backbone: {PAPER_BACKBONE}"
        )
    return ["; ".join(errors)] if errors else []  # one message: every reason the adapter does not fit


def synthetic_split_errors(data: DataSection) -> list[str]:
    """Enough rendered rooms for a test split, a training split and (when carved) a val split."""
    syn = data.synthetic
    rooms = math.ceil(syn.images / syn.views_per_room)
    train_rooms = rooms - n_test_scenes(rooms)
    needed = 2 if data.val_fraction > 0 else 1
    if rooms >= 2 and train_rooms >= needed:
        return []
    return [
        f"params 'data.synthetic': {syn.images} images at {syn.views_per_room} views_per_room make {rooms} room(s); "
        f"the splits need at least one test room and {needed} training room(s) (val is carved from whole "
        "training rooms). Raise data.synthetic.images or lower data.synthetic.views_per_room"
    ]


# ------------------------------------------------------------------------------------------ loading
def load_params(path: Path | str, overrides: Mapping[str, Any] | None = None) -> Params:
    """Read and validate a params file, optionally with dotted-key ``overrides`` applied first."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run the stages from the repository root (dvc repro does)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not raw:
        raise ConfigError(f"{path} is empty: restore the repository's copy with `git checkout {path}`")
    return validate_params(with_overrides(raw, overrides or {}))


def validate_params(raw: Mapping[str, Any]) -> Params:
    """The validated :class:`Params` of a params dict; ConfigError listing every problem otherwise."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"params: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")  # a typo'd key reads first
        raise ConfigError("; ".join(_describe(error) for error in errors)) from None


def _describe(error: Mapping[str, Any]) -> str:
    loc = [part for part in error["loc"] if isinstance(part, str | int)]
    key = ".".join(str(part) for part in loc)
    kind, value = error["type"], error.get("input")
    if kind == "value_error":  # a rule of a section (named by loc) or across sections (names its keys)
        return f"params '{key}': {error['ctx']['error']}" if key else str(error["ctx"]["error"])
    if kind == "extra_forbidden":
        return f"params '{key}': unknown key; valid keys are {sorted(_annotation_at(loc[:-1]).model_fields)}"
    if kind == "missing":
        return f"params '{key}': missing (every key is set in params.yaml; see the repository's copy for the defaults)"
    if kind == "literal_error":
        valid = list(typing.get_args(_annotation_at(loc)))
        return f"params '{key}': unknown value {value!r}; valid values are {valid}"
    message = error["msg"][0].lower() + error["msg"][1:]
    return f"params '{key or 'root'}': {message}, got {value!r}"


def _annotation_at(loc: list[str | int]) -> Any:
    """The type annotation at a validation error's location (for the list of valid keys / values)."""
    tp: Any = Params
    for part in loc:
        if isinstance(part, int):
            tp = typing.get_args(tp)[0]
        else:
            tp = tp.model_fields[part].annotation
        while typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
    return tp
