"""Every path of the pipeline, declared once: the main pipeline's artifacts (:class:`Paths`), the paper grid's
files and per-run locations. Paths are relative to the repository root.

``dvc.yaml`` and ``paper/dvc.yaml`` are generated from these (:mod:`depthcore.pipeline.spec`): every path a
stage reads or writes is also in its entry there, so a changed path changes the stage's entry and DVC re-runs
it. That is why no stage depends on this file (:mod:`depthcore.pipeline.deps`): adding a path re-runs nothing.
Only values and the arithmetic of paths belong here."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

PARAMS_FILE = Path("params.yaml")
MAIN_DVC_FILE = Path("dvc.yaml")
# The paper grid: its rows, its generated pipeline, and where its runs and variants live.
ROWS_FILE = Path("paper/rows.yaml")
GRID_DVC_FILE = Path("paper/dvc.yaml")
GRID_RUNS = Path("data/paper")  # <row>/seed<k>/: a run's own outputs
GRID_MODELS = Path("models/paper")  # <row>/seed<k>.safetensors
GRID_METRICS = Path("metrics/paper")  # <row>/seed<k>.json: a run's evaluate metrics
GRID_VARIANTS = Path("data/paper/variants")  # <stage>-<hash>/: upstream artifacts some rows need


RESUME_SUFFIX = ".resume.pt"  # training state of an interrupted run, next to its checkpoint


def resume_state_of(model: Path) -> Path:
    """Where the training that writes the checkpoint ``model`` keeps its state until it finishes."""
    return model.with_name(model.stem + RESUME_SUFFIX)


@dataclass(frozen=True)
class Paths:
    """Where each stage reads and writes (the main pipeline's locations)."""

    params_check: Path = Path("data/checks/params.ok")
    raw: Path = Path("data/raw")
    local_backbone_weights: Path = Path("weights/backbone")
    local_sam_weights: Path = Path("weights/sam")
    weights_downloads: Path = Path("data/weights/downloads")  # kept releases (not a DVC output): a switch back re-links
    backbone_settings: Path = Path("data/features/backbone.json")
    backbone_weights: Path = Path("data/weights/backbone")
    sam_weights: Path = Path("data/weights/sam")
    dataset: Path = Path("data/prepared/dataset.zarr")
    split: Path = Path("data/prepared/split.json")
    pairs: Path = Path("data/prepared/pairs.zarr")
    features: Path = Path("data/features/backbone.zarr")
    clip_shallow: Path = Path("data/features/clip_shallow.safetensors")
    clip_head: Path = Path("data/features/clip_head.safetensors")
    segments: Path = Path("data/features/segments.zarr")
    segments_metrics: Path = Path("metrics/segments.json")
    zeroshot: Path = Path("data/predictions/zeroshot.zarr")
    zeroshot_metrics: Path = Path("metrics/zeroshot.json")
    zeroshot_figure: Path = Path("plots/zeroshot.png")
    train_inputs: Path = Path("data/train_inputs.json")
    model: Path = Path("models/model.safetensors")
    train_metrics: Path = Path("metrics/train.json")
    train_curves: Path = Path("plots/train_curves.csv")
    predictions: Path = Path("data/predictions/model.zarr")
    eval_metrics: Path = Path("metrics/eval.json")
    eval_per_image: Path = Path("metrics/eval_per_image.csv")
    eval_figure: Path = Path("plots/eval.png")
    grid_check: Path = Path("data/checks/paper.ok")
    paper_metrics: Path = Path("metrics/paper.json")
    paper_report: Path = Path("reports/paper.md")
    paper_figure: Path = Path("plots/paper.png")
    paper_backbones_figure: Path = Path("plots/paper_backbones.png")

    def under(self, root: Path | str) -> Paths:
        """The same layout below ``root`` (tests and benchmarks build pipelines in temporary folders)."""
        return replace(self, **{f.name: Path(root) / getattr(self, f.name) for f in fields(self)})

    @property
    def resume_state(self) -> Path:
        """Training state of an interrupted run (next to the model; not a DVC output)."""
        return resume_state_of(self.model)

    def phase_model(self, phase: str) -> Path:
        """The finished checkpoint of an earlier training ``phase`` (next to the model; removed at the end)."""
        return self.model.with_name(f"{self.model.stem}.{phase}.safetensors")

    def for_run(self, row_id: str, seed: int | str) -> Paths:
        """These paths with a paper grid run's own outputs (model, curves, predictions, metrics, figure)."""
        run = GRID_RUNS / row_id / f"seed{seed}"
        return replace(
            self,
            model=GRID_MODELS / row_id / f"seed{seed}.safetensors",
            train_metrics=run / "train.json",
            train_curves=run / "train_curves.csv",
            predictions=run / "predictions.zarr",
            eval_metrics=run_metrics_path(row_id, seed),
            eval_per_image=run / "per_image.csv",
            eval_figure=run / "eval.png",
        )


def run_metrics_path(row_id: str, seed: int | str) -> Path:
    """The evaluate metrics of paper grid run (row, seed): ``metrics/paper/<row>/seed<k>.json``."""
    return GRID_METRICS / row_id / f"seed{seed}.json"
