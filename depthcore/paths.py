"""Every artifact path of the pipeline, declared once (``dvc.yaml`` names the same paths; a test checks
that each stage's deps and outs are these). Paths are relative to the repository root."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """Where each stage reads and writes (the main pipeline's locations)."""

    raw: Path = Path("data/raw")
    local_clip_weights: Path = Path("weights/clip")
    local_sam_weights: Path = Path("weights/sam")
    clip_weights: Path = Path("data/weights/clip")
    sam_weights: Path = Path("data/weights/sam")
    dataset: Path = Path("data/prepared/dataset.zarr")
    split: Path = Path("data/prepared/split.json")
    pairs: Path = Path("data/prepared/pairs.zarr")
    clip_features: Path = Path("data/features/clip.zarr")
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
    paper_metrics: Path = Path("metrics/paper.json")
    paper_report: Path = Path("reports/paper.md")
    paper_figure: Path = Path("plots/paper.png")

    def under(self, root: Path | str) -> Paths:
        """The same layout below ``root`` (tests and benchmarks build pipelines in temporary folders)."""
        return replace(self, **{f.name: Path(root) / getattr(self, f.name) for f in fields(self)})

    @property
    def resume_state(self) -> Path:
        """Training state of an interrupted run (next to the model; not a DVC output)."""
        return self.model.with_name(self.model.stem + ".resume.pt")

    @property
    def coarse_model(self) -> Path:
        """The finished first (coarse) phase of a two-stage training (next to the model; removed at the end)."""
        return self.model.with_name(self.model.stem + ".coarse.safetensors")
