"""The main pipeline's stages, declared once, and ``dvc.yaml`` generated from them.

Each :class:`StageSpec` names its data dependencies and outputs by :class:`~depthcore.config.paths.Paths`
field, and the params it declares; its code dependencies are never written by hand: they are the files its
script runs (:mod:`depthcore.pipeline.deps`). ``python -m depthcore.pipeline write`` (``make pipeline``)
writes ``dvc.yaml``; the paper grid's generator (:mod:`depthcore.paper.grid`) renders the same specs with
moved paths for its upstream variants. A test checks that the committed files are what these specs give.

Every stage depends (directly or through its inputs) on ``check``, which validates the whole params.yaml
whenever the file changes and writes an output that never changes: a bad params.yaml is refused by every
``dvc repro`` / ``dvc exp run``, even when no other stage would run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from depthcore.closure import REPO, STAGE_HELPER
from depthcore.config.paths import MAIN_DVC_FILE, PARAMS_FILE, ROWS_FILE, Paths
from depthcore.pipeline.deps import BACKBONE_PACKAGE, PLUGIN_PACKAGES, code_closure

OUT_KINDS = ("out", "uncached", "metric", "plot")


@dataclass(frozen=True)
class Out:
    """An output: a :class:`Paths` field, how DVC tracks it (``out``: cached; ``uncached``; ``metric`` and
    ``plot``: uncached, listed by ``dvc metrics`` / ``dvc plots``), ``persist`` (kept while the stage runs, for
    resuming) and a plot's axes."""

    field: str
    kind: str = "out"
    persist: bool = False
    axes: dict[str, str] | None = None


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``deps`` and ``outs`` are :class:`Paths` fields, ``files`` literal paths it also depends on,
    ``params`` the dotted keys it declares. ``plugins``: ``all`` (it may read any adapter's, loss's or backbone's
    code: their packages are dependencies), ``backbones`` (any backbone's: the zoo package), ``chosen`` (it builds
    the chosen ones, whose code train_inputs.json hashes) or None. ``validation``: it runs the params schema
    itself (the check stage)."""

    name: str
    doc: str
    deps: tuple[str, ...] = ()
    outs: tuple[Out, ...] = ()
    params: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    plugins: str | None = None
    validation: bool = False

    @property
    def script(self) -> str:
        return f"stages/{self.name}.py"


STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        "check",
        "check: the whole params.yaml validated whenever it or paper/rows.yaml changes (the paper section as make "
        "paper checks it); its output never changes, so a valid edit re-runs nothing by itself",
        files=(str(PARAMS_FILE), str(ROWS_FILE)),
        outs=(Out("params_check", "uncached", persist=True),),  # a refused edit leaves downstream stages up to date
        plugins="all",
        validation=True,
    ),
    StageSpec(
        "fetch_data",
        "fetch_data: NYUv2 download (and BTS's raw frames for nyuv2_raw), or the synthetic rooms rendered "
        "(re-rendered when the renderer changes)",
        deps=("params_check",),
        outs=(Out("raw", persist=True),),  # keeps partial downloads so an interrupted fetch resumes
        params=("data.source", "data.nyuv2", "data.nyuv2_raw", "data.synthetic"),
    ),
    StageSpec(
        "backbone",
        "backbone: the selected backbone's settings and code hashes (clip_rn50: the clip section); the weights and "
        "feature stages depend on this file, so another backbone's settings or code re-run nothing else",
        deps=("params_check",),
        outs=(Out("backbone_settings"),),
        params=("backbone", "backbones", "clip.model", "clip.pretrained", "clip.init_seed", "clip.cache_layers"),
        plugins="backbones",
    ),
    StageSpec(
        "fetch_backbone",
        "fetch_backbone: the selected backbone's weights (clip_rn50: those clip.pretrained names); weights/backbone/ "
        "holds user files (tracked by content); releases are kept in data/weights/downloads/ for a switch back",
        deps=("backbone_settings", "local_backbone_weights"),
        outs=(Out("backbone_weights", persist=True),),
    ),
    StageSpec(
        "fetch_sam",
        "fetch_sam: the SAM weights sam.pretrained names; weights/sam/ holds user files (tracked by content)",
        deps=("params_check", "local_sam_weights"),
        outs=(Out("sam_weights", persist=True),),
        params=("sam.model", "sam.pretrained", "sam.init_seed"),
    ),
    StageSpec(
        "prepare",
        "prepare: the raw files into the one dataset layout",
        deps=("raw",),
        outs=(Out("dataset"),),
        params=("data.source",),
    ),
    StageSpec(
        "split",
        "split: the validation carve alone: changing it re-runs training, not features",
        deps=("dataset",),
        outs=(Out("split"),),
        params=("data.val_fraction", "data.split_seed"),
    ),
    StageSpec(
        "pairs",
        "pairs: second views for losses that read them (only those runs depend on it)",
        deps=("dataset",),
        outs=(Out("pairs"),),
        params=("pairs",),
    ),
    StageSpec(
        "features",
        "features: the selected backbone's cached layers (features: live: only the zero-shot head's layer), and the "
        "CLIP stem + layer1 weights adapters compute those layers with",
        deps=("dataset", "backbone_weights", "backbone_settings"),
        outs=(Out("features"), Out("clip_shallow")),
        params=("features",),
    ),
    StageSpec(
        "clip_head",
        "clip_head: the small CLIP artifact of the zero-shot head (prompt embeddings; none without a text tower)",
        deps=("backbone_weights", "backbone_settings"),
        outs=(Out("clip_head"),),
        params=("depthclip",),
    ),
    StageSpec(
        "segments",
        "segments: the segment map of every image (SAM, ground truth, superpixels or none)",
        deps=("dataset", "sam_weights"),
        outs=(Out("segments"),),
        params=(
            "segments",
            "sam.points_per_side",
            "sam.pred_iou_thresh",
            "sam.stability_score_thresh",
            "sam.min_mask_region_area",
        ),
    ),
    StageSpec(
        "segments_report",
        "segments_report: segments per image, coverage and alignment with the ground-truth objects",
        deps=("segments", "dataset"),
        outs=(Out("segments_metrics", "metric"),),
    ),
    StageSpec(
        "zeroshot",
        "zeroshot: DepthCLIP's zero-shot depth of every image, from the cached layer4",
        deps=("features", "clip_head"),
        outs=(Out("zeroshot"),),
    ),
    StageSpec(
        "zeroshot_report",
        "zeroshot_report: the zero-shot test metrics (beside the constant train-mean depth) and figure",
        deps=("zeroshot", "dataset", "split"),
        outs=(Out("zeroshot_metrics", "metric"), Out("zeroshot_figure", "plot")),
        params=("eval",),
    ),
    StageSpec(
        "train_inputs",
        "train_inputs: what a training run depends on: the DVC hashes of the artifacts the chosen adapter and "
        "loss read, the params keys its output is a function of, and the hashes of the chosen adapter's and "
        "loss's code; train and evaluate depend on this file, so an artifact, a setting or a plugin the run does "
        "not use never re-runs them",
        deps=(
            "dataset",
            "split",
            "pairs",
            "features",
            "clip_shallow",
            "clip_head",
            "segments",
            "zeroshot",
            "backbone_weights",
            "backbone_settings",
        ),
        outs=(Out("train_inputs"),),
        params=("seed", "adapter", "adapters", "loss", "losses", "train", "presets", "recipes", "features"),
        plugins="all",
    ),
    StageSpec(
        "train",
        "train: the chosen adapter trained on the cached inputs, or with features: live the backbone run per batch "
        "(its code through train_inputs.json)",
        deps=("train_inputs",),
        outs=(
            Out("model"),
            Out("train_metrics", "metric"),
            Out("train_curves", "plot", axes={"x": "epoch", "y": "val_loss"}),
        ),
        plugins="chosen",
    ),
    StageSpec(
        "evaluate",
        "evaluate: the checkpoint on the test split with the shared protocol, beside the constant train-mean depth",
        deps=("model", "train_inputs"),
        outs=(
            Out("predictions"),
            Out("eval_per_image", "uncached"),
            Out("eval_metrics", "metric"),
            Out("eval_figure", "plot"),
        ),
        params=("eval",),
        plugins="chosen",
    ),
)
SPECS = {spec.name: spec for spec in STAGES}


def stage_closure(spec: StageSpec, script: str | None = None) -> set[str]:
    """The project files ``spec``'s stage runs (``script``: the script that runs it, default its own), with the
    plugin packages for a stage that may read any plugin."""
    files = code_closure(script or spec.script, validation=spec.validation)
    if spec.plugins == "all":
        return files | set(PLUGIN_PACKAGES)
    return files | ({BACKBONE_PACKAGE} if spec.plugins == "backbones" else set())


def code_deps(files: set[str], first: list[str]) -> list[str]:
    """``first``, then the other files sorted, with every file inside a plugin package of ``files`` dropped
    (covered by that folder)."""
    folders = [f for f in files if (REPO / f).is_dir()]
    rest = {f for f in files if not any(f.startswith(d + "/") for d in folders)} - set(first)
    return first + sorted(rest)


def outputs(outs: tuple[Out, ...], paths: Paths, *, report_as_plain: bool = False) -> dict[str, list]:
    """The ``outs`` / ``metrics`` / ``plots`` entries of a stage. ``report_as_plain``: metrics and plots as plain
    uncached outputs (the paper grid's, so that ``dvc metrics`` and ``dvc plots`` stay about the main pipeline)."""
    entries: dict[str, list] = {"outs": [], "metrics": [], "plots": []}
    for out in outs:
        path = str(getattr(paths, out.field))
        options: dict[str, Any] = {}
        if out.kind != "out":
            options["cache"] = False
        if out.persist:
            options["persist"] = True
        if out.axes and not report_as_plain:
            options |= out.axes
        section = "outs" if report_as_plain or out.kind in ("out", "uncached") else f"{out.kind}s"
        entries[section].append({path: options} if options else path)
    return {key: value for key, value in entries.items() if value}


def render_stage(spec: StageSpec, paths: Paths = Paths()) -> dict[str, Any]:  # noqa: B008  (frozen dataclass)
    """The dvc.yaml entry of ``spec`` with the main pipeline's paths."""
    deps = code_deps(stage_closure(spec), [spec.script, STAGE_HELPER]) + list(spec.files)
    deps += [str(getattr(paths, name)) for name in spec.deps]
    entry: dict[str, Any] = {"cmd": f"python {spec.script}", "deps": deps}
    if spec.params:
        entry["params"] = list(spec.params)
    return entry | outputs(spec.outs, paths)


def dump_stages(stages: dict[str, dict[str, Any]], docs: dict[str, str], header: str) -> str:
    """YAML text of ``stages`` with each stage's doc as a comment above it, after the ``header`` comment."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines.append("stages:")
    for name, entry in stages.items():
        if docs.get(name):
            lines.append(f"  # {docs[name]}")
        body = yaml.safe_dump({name: entry}, sort_keys=False, width=120).rstrip()
        lines += ["  " + line for line in body.splitlines()]
    return "\n".join(lines) + "\n"


MAIN_HEADER = (
    "Generated by `make pipeline` (python -m depthcore.pipeline write) from depthcore/pipeline/spec.py: do not\n"
    "edit. Every stage depends on exactly the project code it runs (its script's imports) and declares exactly the\n"
    "params it reads; artifact paths are those of depthcore/config/paths.py. See docs/pipeline.md."
)


def main_dvc_yaml() -> str:
    """The text of ``dvc.yaml``."""
    return dump_stages(
        {spec.name: render_stage(spec) for spec in STAGES}, {spec.name: spec.doc for spec in STAGES}, MAIN_HEADER
    )


def write_main() -> str:
    text = main_dvc_yaml()
    (REPO / MAIN_DVC_FILE).write_text(text)
    return text
