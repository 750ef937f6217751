"""The paper's Tables 1-4 (and depthcore's Table 5) as one cached grid of runs.

Rows are defined once in ``paper/rows.yaml``: for each row its table, label, the published numbers and
``params``, dotted params.yaml keys set for that row's runs. A row either trains (an adapter and a loss,
run once per seed), evaluates the zero-shot predictions (``kind: zeroshot``), evaluates uniform random
depth (``kind: lower_bound``, per seed), is the same run as another row (``same_as``) or is cited from
other work (``cited``: shown, never run).

The grid reuses the main pipeline's dataset, weights and CLIP features. A row that needs another
upstream artifact (e.g. ground-truth segments, reprojected pairs, a MaskCLIP head) gets a *variant*:
the same stage run with the row's settings into ``data/paper/variants/<stage>-<hash>/``, computed once
for every row that needs the same one. Run paths: ``models/paper/<row>/seed<k>.safetensors``,
``data/paper/<row>/seed<k>/``, and the evaluate metrics ``metrics/paper/<row>/seed<k>.json``.

``paper/grid.py`` writes ``paper/dvc.yaml`` (a ``matrix`` over ``paper.seeds`` per row), and
:func:`aggregate` / :func:`report_markdown` / :func:`save_figure` turn the per-run metrics into
``metrics/paper.json`` (mean, sample std, n, published), ``reports/paper.md`` and a figure.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from depthcore.errors import DepthcoreError
from depthcore.io import atomic_path, read_json, write_json_atomic
from depthcore.metrics import METRIC_NAMES
from depthcore.params import ConfigError, Params, validate_params, with_overrides
from depthcore.paths import Paths

ROWS_FILE = Path("paper/rows.yaml")
DVC_FILE = Path("paper/dvc.yaml")
RUN_METRICS_DIR = Path("metrics/paper")  # one evaluate metrics file per (row, seed) below it
PUBLISHED_METRICS = ("d1", "d2", "d3", "abs_rel", "rmse")
PUBLISHED_LOG_METRIC = {"log10": "log10", "paper_rmse_log": "rmse_log"}  # published key -> our metric
# Params a row may not set: the grid reuses the main pipeline's dataset, weights and features as they are.
FIXED = ("data.", "clip.", "sam.model", "sam.pretrained", "sam.init_seed", "runtime.", "paper.", "seed", "eval.")
# The upstream stages a row can vary, with the params that decide their output (their declared params in
# dvc.yaml; tests/test_paper.py checks they agree).
VARIANT_PARAMS = {
    "segments": (
        "segments",
        "sam.points_per_side",
        "sam.pred_iou_thresh",
        "sam.stability_score_thresh",
        "sam.min_mask_region_area",
    ),
    "pairs": (
        "ssl.pairs",
        "ssl.seed",
        "ssl.max_rotation_deg",
        "ssl.max_shift_px",
        "ssl.plane_depth_m",
        "ssl.max_translation_m",
    ),
    "clip_head": ("depthclip",),
    "zeroshot": ("depthclip", "eval"),
}


class PaperError(DepthcoreError, ValueError):
    """A row is unknown, contradicts itself, sets a fixed param or lacks a published metric."""


class Row(BaseModel):
    """One result row of ``paper/rows.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: int
    label: str
    kind: Literal["train", "zeroshot", "lower_bound"] = "train"
    params: dict[str, Any] = {}
    published: dict[str, float | None] | None = None
    same_as: str | None = None
    cited: bool = False

    @model_validator(mode="after")
    def _one_role(self) -> Row:
        if self.cited and (self.params or self.same_as or self.kind != "train"):
            raise ValueError("a cited row is only shown: it takes no params, same_as or kind")
        if self.same_as and (self.params or self.published):
            raise ValueError("a same_as row takes its numbers from the row it names: no params or published")
        return self

    @property
    def runs(self) -> bool:
        """Whether the grid computes this row itself (not cited, not the same run as another row)."""
        return not self.cited and self.same_as is None


def load_rows(path: Path | str = ROWS_FILE) -> dict[str, Row]:
    """The rows of ``path`` (row id -> Row), each checked: its published numbers name every metric of its
    table, a ``same_as`` names a row that runs."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    rows = {}
    for row_id, spec in raw.items():
        try:
            rows[row_id] = Row.model_validate(spec)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors())
            raise PaperError(f"{path}: row {row_id!r}: {problems}") from None
    for row_id, row in rows.items():
        if row.published is not None:
            logs = [key for key in PUBLISHED_LOG_METRIC if key in row.published]
            missing = [key for key in PUBLISHED_METRICS if key not in row.published]
            if missing or len(logs) != 1 or len(row.published) != len(PUBLISHED_METRICS) + 1:
                raise PaperError(
                    f"{path}: row {row_id!r}: published numbers must give {list(PUBLISHED_METRICS)} and one of "
                    f"{list(PUBLISHED_LOG_METRIC)} (null where the paper has none); got {sorted(row.published)}"
                )
        if row.same_as is not None and (row.same_as not in rows or not rows[row.same_as].runs):
            raise PaperError(f"{path}: row {row_id!r}: same_as {row.same_as!r} is not a row that runs")
    return rows


def select_rows(rows: dict[str, Row], selection: list[str] | None) -> list[str]:
    """The row ids of ``paper.rows`` (None: every row), plus the rows their ``same_as`` point to."""
    if selection is None:
        return list(rows)
    unknown = [row_id for row_id in selection if row_id not in rows]
    if unknown:
        raise PaperError(f"params 'paper.rows': unknown row(s) {unknown}; valid rows are {list(rows)}")
    chosen = list(dict.fromkeys(selection))
    chosen += [rows[r].same_as for r in chosen if rows[r].same_as and rows[r].same_as not in chosen]
    return chosen


def row_params(raw: dict[str, Any], row_id: str, row: Row, *, seed: int = 0) -> Params:
    """The validated params of a run of ``row``: params.yaml (``raw``), then the row's params, the seed and
    the grid's epoch cap (``paper.max_epochs``). Errors name the row."""
    fixed = [key for key in row.params if key.startswith(FIXED) and key != "depthclip.dense"]
    if fixed:
        raise PaperError(
            f"row {row_id!r} sets {fixed}, which the grid does not vary (it reuses the main pipeline's dataset, "
            "weights, features and protocol): set them in params.yaml for the whole study instead"
        )
    overrides = dict(row.params) | {"seed": seed}
    cap = (raw.get("paper") or {}).get("max_epochs")
    if cap is not None:
        train_cap = (raw.get("train") or {}).get("max_epochs")
        overrides["train.max_epochs"] = cap if train_cap is None else min(cap, train_cap)
    try:
        return validate_params(with_overrides(raw, overrides))
    except ConfigError as exc:
        raise PaperError(f"row {row_id!r}: {exc}") from None


# -------------------------------------------------------------------------------------------- paths
def _values(params: Params, keys: tuple[str, ...]) -> dict[str, Any]:
    dumped = params.model_dump(mode="json")
    out = {}
    for key in keys:
        node = dumped
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out


def variant_id(stage: str, params: Params, base: Params) -> str | None:
    """The variant of upstream ``stage`` that ``params`` need (None: the main pipeline's output)."""
    values = _values(params, VARIANT_PARAMS[stage])
    if values == _values(base, VARIANT_PARAMS[stage]):
        return None
    return f"{stage}-{hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]}"


def variant_paths(paths: Paths, params: Params, base: Params) -> Paths:
    """``paths`` with every upstream artifact ``params`` need in a variant moved to the variant's folder."""
    moved: dict[str, Path] = {}
    for stage, fields in (
        ("segments", ("segments", "segments_metrics")),
        ("pairs", ("pairs",)),
        ("clip_head", ("clip_head",)),
        ("zeroshot", ("zeroshot", "zeroshot_metrics", "zeroshot_figure")),
    ):
        vid = variant_id(stage, params, base)
        if vid is not None:
            folder = Path("data/paper/variants") / vid
            moved |= {name: folder / getattr(paths, name).name for name in fields}
    return replace(paths, **moved)


def seed_metrics_path(row_id: str, seed: int | str) -> Path:
    """The evaluate metrics of run (row, seed): ``metrics/paper/<row>/seed<k>.json``."""
    return RUN_METRICS_DIR / row_id / f"seed{seed}.json"


def run_paths(row_id: str, seed: int, params: Params, base: Params) -> Paths:
    """Where run (row, seed) reads and writes: its variants' artifacts and its own model and results."""
    run = Path("data/paper") / row_id / f"seed{seed}"
    own = {
        "model": Path("models/paper") / row_id / f"seed{seed}.safetensors",
        "train_metrics": run / "train.json",
        "train_curves": run / "train_curves.csv",
        "predictions": run / "predictions.zarr",
        "eval_metrics": seed_metrics_path(row_id, seed),
        "eval_per_image": run / "per_image.csv",
        "eval_figure": run / "eval.png",
    }
    return replace(variant_paths(Paths(), params, base), **own)


def metrics_files(row_id: str, row: Row, seeds: list[int], params: Params, base: Params) -> list[Path]:
    """The evaluate metrics files a row's numbers come from (zero-shot rows: one, not per seed)."""
    if row.kind == "zeroshot":
        return [variant_paths(Paths(), params, base).zeroshot_metrics]
    return [seed_metrics_path(row_id, seed) for seed in seeds]


# -------------------------------------------------------------------------------------- aggregation
def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof 1; 0 for a single run) of every metric over the runs."""
    n = len(runs)
    mean = {name: float(np.mean([r[name] for r in runs])) for name in METRIC_NAMES}
    std = {name: float(np.std([r[name] for r in runs], ddof=1)) if n > 1 else 0.0 for name in METRIC_NAMES}
    return {"mean": mean, "std": std, "n": n}


def aggregate(rows: dict[str, Row], chosen: list[str], results: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """``metrics/paper.json``: {row id: {"published", "mean", "std", "n"}} for the chosen rows (cited rows:
    the published numbers only, n 0; same_as rows: the numbers of the run they name)."""
    out = {}
    for row_id in chosen:
        row = rows[row_id]
        source = row.same_as or row_id
        entry: dict[str, Any] = {"published": rows[source].published if row.same_as else row.published}
        if row.cited:
            entry |= {"mean": None, "std": None, "n": 0}
        else:
            entry |= summarize(results[source])
        out[row_id] = entry
    return out


def _cell(entry: dict[str, Any], metric: str, published_key: str | None) -> str:
    ours = "-" if entry.get("mean") is None else f"{entry['mean'][metric]:.3f} ± {entry['std'][metric]:.3f}"
    published = (entry.get("published") or {}).get(published_key) if published_key else None
    return f"{ours} ({'-' if published is None else f'{published:.3f}'})"


TABLE_TITLES = {
    1: "Table 1: monocular depth on NYU Depth v2",
    2: "Table 2: Coarse/Refined adapter",
    3: "Table 3: Multi-Scale Adapter, CLIP and SAM",
    4: "Table 4: CLIP-Adapter, image and text adapters",
    5: "Table 5 (depthcore): stronger variants testing the paper's conclusions",
}


def report_markdown(rows: dict[str, Row], summary: dict[str, Any], *, seeds: list[int]) -> str:
    """``reports/paper.md``: one table per paper table, each cell "ours mean ± std (published)"; columns are
    named by what they compute (the paper's "rmse_log" is ``log10`` in Tables 1, 3, 4 and looks like the
    natural-log RMSE ``rmse_log`` in Table 2)."""
    lines = [
        f"Each cell: ours, mean ± sample std over seeds {seeds} (zero-shot rows: one deterministic run), then "
        "(the published number). Columns are named by what they compute: `log10` = mean |log10 g - log10 p| "
        "(the paper's rmse_log of Tables 1, 3, 4), `rmse_log` = RMSE of ln depth (Table 2's column). "
        "Setup and deviations: docs/fidelity.md.",
        "",
    ]
    for table, title in TABLE_TITLES.items():
        ids = [row_id for row_id in summary if rows[row_id].table == table]
        if not ids:
            continue
        log_metric = "rmse_log" if table == 2 else "log10"
        published_log = "paper_rmse_log" if table == 2 else "log10"
        columns = [
            ("d1", "d1"),
            ("d2", "d2"),
            ("d3", "d3"),
            ("abs_rel", "abs_rel"),
            (log_metric, published_log),
            ("rmse", "rmse"),
        ]
        lines += [
            f"### {title}",
            "",
            "| row | " + " | ".join(m for m, _ in columns) + " | n |",
            "| --- |" + " --- |" * (len(columns) + 1),
        ]
        for row_id in ids:
            entry = summary[row_id]
            cells = [_cell(entry, metric, published) for metric, published in columns]
            label = rows[row_id].label + (" (cited)" if rows[row_id].cited else "")
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {entry['n']} |")
        lines.append("")
    return "\n".join(lines)


def save_figure(path: Path | str, rows: dict[str, Row], summary: dict[str, Any]) -> Path:
    """d1 and abs_rel per computed row: ours (mean, error bar = sample std) beside the published number."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = [row_id for row_id, entry in summary.items() if entry.get("mean") is not None]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.35 * len(ids) + 1.5), sharey=True, squeeze=False)
    y = np.arange(len(ids))
    for ax, metric in zip(axes[0], ("d1", "abs_rel"), strict=True):
        ours = [summary[r]["mean"][metric] for r in ids]
        err = [summary[r]["std"][metric] for r in ids]
        published = [(summary[r]["published"] or {}).get(metric) for r in ids]
        ax.barh(y, ours, xerr=err, color="tab:blue", alpha=0.7, label="depthcore (mean ± std)")
        shown = [(yi, p) for yi, p in zip(y, published, strict=True) if p is not None and not math.isnan(p)]
        if shown:
            ax.scatter(
                [p for _, p in shown],
                [yi for yi, _ in shown],
                color="tab:red",
                marker="|",
                s=200,
                label="published",
                zorder=3,
            )
        ax.set_xlabel(metric)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, [rows[r].label for r in ids], fontsize=7)
    axes[0][0].invert_yaxis()
    axes[0][1].legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


LOWER_BOUND = "t1_lower_bound"


def lower_bound_path(seed: int | str) -> Path:
    """The evaluate metrics of the lower bound's run with ``seed``."""
    return seed_metrics_path(LOWER_BOUND, seed)


def write_report(
    raw: dict[str, Any],
    *,
    rows_file: Path | str = ROWS_FILE,
    out_json: Path | str,
    out_markdown: Path | str,
    out_figure: Path | str,
) -> dict[str, Any]:
    """The report stage: read every run's metrics of the chosen rows (``raw``: params.yaml), write
    ``metrics/paper.json``, ``reports/paper.md`` and the figure; returns the summary."""
    rows = load_rows(rows_file)
    seeds = list((raw.get("paper") or {}).get("seeds") or [0])
    chosen = select_rows(rows, (raw.get("paper") or {}).get("rows"))
    base = validate_params(raw)
    results = {}
    for row_id in chosen:
        row = rows[row_id]
        if not row.runs:
            continue
        if row.kind == "lower_bound":
            files = [lower_bound_path(seed) for seed in seeds]
        else:
            files = metrics_files(row_id, row, seeds, row_params(raw, row_id, row), base)
        results[row_id] = [read_json(f) for f in files]
    summary = aggregate(rows, chosen, results)
    write_json_atomic(out_json, summary)
    with atomic_path(out_markdown) as tmp:
        tmp.write_text(report_markdown(rows, summary, seeds=seeds))
    save_figure(out_figure, rows, summary)
    return summary
