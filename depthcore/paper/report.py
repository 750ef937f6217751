"""The paper grid's report: every run's metrics -> ``metrics/paper.json`` (mean, sample std, n and the published
numbers per row), ``reports/paper.md`` (the paper's tables, each cell "ours mean ± std (published)") and a figure.
Only the report stage runs this module: editing a table title or the figure re-runs nothing else."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from depthcore.config.paths import ROWS_FILE, run_metrics_path
from depthcore.evaluation.metrics import METRIC_NAMES
from depthcore.io import atomic_path, read_json, write_json_atomic, write_text_atomic
from depthcore.paper.grid import metrics_files
from depthcore.paper.rows import LOWER_BOUND, Row, load_rows, select_rows


def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof 1; 0 for a single run) of every metric every run reports (runs
    evaluated before a metric existed leave it out)."""
    n = len(runs)
    names = [name for name in METRIC_NAMES if all(name in r for r in runs)]
    mean = {name: float(np.mean([r[name] for r in runs])) for name in names}
    std = {name: float(np.std([r[name] for r in runs], ddof=1)) if n > 1 else 0.0 for name in names}
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
        if row.protocol == "field":
            entry |= {
                "protocol": row.protocol,
                "published_source": row.source,
                "published_protocol": row.published_protocol,
                "paper_row": row.paper_row,
            }
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
    6: "Table 6 (depthcore): frozen backbone x probe on the paper's low-data protocol (716 images, cached features)",
}
PROBE_NAMES = {"linear_probe": "linear probe", "dpt_probe": "DPT probe", "msa": "Multi-Scale Adapter (paper)"}


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
        ids = [row_id for row_id in summary if rows[row_id].table == table and rows[row_id].protocol == "paper"]
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
        sources = [(rows[r].label, rows[r].source) for r in ids if rows[r].source]
        if sources:
            lines += ["", "Published numbers in brackets come from other work, under its own protocol:"]
            lines += [f"- {label}: {source}" for label, source in sources]
        lines.append("")
    field = [row_id for row_id in summary if rows[row_id].protocol == "field"]
    if field:
        lines += field_table_markdown(rows, summary, field, seeds=seeds)
    return "\n".join(lines)


FIELD_TITLE = "Table 6 on the field's protocol: raw NYUv2 frames, live features, the references' recipes"
FIELD_METRICS = ("rmse", "abs_rel", "d1")  # the references report RMSE; abs_rel and d1 as the other tables
SCALE_INVARIANT = ("si_rmse", "si_d1")  # Probe3D's, after a per-image least-squares scale and shift


def _ours(entry: dict[str, Any] | None, metric: str) -> str:
    if not entry or entry.get("mean") is None or metric not in entry["mean"]:
        return "-"
    return f"{entry['mean'][metric]:.3f} ± {entry['std'][metric]:.3f}"


def field_table_markdown(
    rows: dict[str, Row], summary: dict[str, Any], ids: list[str], *, seeds: list[int]
) -> list[str]:
    """The field-protocol Table 6 in three column groups, never mixed in one cell: (1) ours on the field's
    protocol, mean ± sample std over the seeds; (2) the published number, its source and the protocol it was
    measured on; (3) ours on the paper's low-data cached protocol (the row's ``paper_row``, where it ran)."""
    scale_invariant = [m for m in SCALE_INVARIANT if any(m in (summary[r].get("mean") or {}) for r in ids)]
    ours = [*FIELD_METRICS, *scale_invariant]
    header = [f"field: {m}" for m in ours] + ["n", "published: rmse", "published: source"]
    header += [f"low-data: {m}" for m in FIELD_METRICS] + ["low-data: n"]
    lines = [
        f"### {FIELD_TITLE}",
        "",
        f"Three column groups, each from its own protocol. **field**: ours, mean ± sample std over seeds {seeds}, "
        "trained on the raw-frame training set (params `paper.field_source`) with the backbone run live on "
        "augmented crops and each reference's recipe (docs/probes.md). **published**: the reference's number, "
        "with its source; the protocol it was measured on is listed below the table. **low-data**: ours on the "
        "paper's protocol (716 labelled images, cached features), the row's Table 6 counterpart above.",
        "",
        "| row | " + " | ".join(header) + " |",
        "| --- |" + " --- |" * len(header),
    ]
    protocols = []
    for row_id in ids:
        row, entry = rows[row_id], summary[row_id]
        twin = summary.get(row.paper_row) if row.paper_row else None
        published = (row.published or {}).get("rmse")
        cells = [_ours(entry, m) for m in ours] + [str(entry["n"])]
        cells += ["-" if published is None else f"{published:.3f}", row.source or "-"]
        cells += [_ours(twin, m) for m in FIELD_METRICS] + [str(twin["n"]) if twin else "-"]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
        if published is not None:
            protocols.append(f"- {row.label}: {row.published_protocol}")
    if protocols:
        lines += ["", "How each published number was measured:", *protocols]
    lines.append("")
    return lines


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


def backbone_probe(rows: dict[str, Row], row_id: str) -> tuple[str, str]:
    """(backbone, adapter) of a Table 6 row (a same_as row: those of the row it names)."""
    row = rows[rows[row_id].same_as or row_id]
    return str(row.params.get("backbone", "clip_rn50")), str(row.params["adapter"])


def save_backbone_figure(path: Path | str, rows: dict[str, Row], summary: dict[str, Any]) -> Path:
    """Table 6 as a figure: d1 and abs_rel per backbone (groups) and probe (bars; error bar = sample std), the
    published value marked where there is one (no Table 6 row chosen: a figure saying so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = [
        r
        for r, entry in summary.items()
        if rows[r].table == 6 and rows[r].protocol == "paper" and entry.get("mean") is not None
    ]
    cells = {backbone_probe(rows, r): summary[r] for r in ids}
    backbones = list(dict.fromkeys(b for b, _ in cells))
    probes = list(dict.fromkeys(p for _, p in cells))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.6 * max(len(backbones), 1) * max(len(probes), 1) + 1.5))
    width = 0.8 / max(len(probes), 1)
    for ax, metric in zip(axes, ("d1", "abs_rel"), strict=True):
        for k, probe in enumerate(probes):
            y = [i + k * width for i, b in enumerate(backbones) if (b, probe) in cells]
            entries = [cells[(b, probe)] for b in backbones if (b, probe) in cells]
            ax.barh(
                y,
                [e["mean"][metric] for e in entries],
                height=width,
                xerr=[e["std"][metric] for e in entries],
                label=PROBE_NAMES.get(probe, probe),
            )
            marks = [(yi, (e["published"] or {}).get(metric)) for yi, e in zip(y, entries, strict=True)]
            marks = [(yi, v) for yi, v in marks if v is not None]
            if marks:
                ax.scatter([v for _, v in marks], [yi for yi, _ in marks], color="black", marker="|", s=200, zorder=3)
        ax.set_yticks([i + 0.4 - width / 2 for i in range(len(backbones))], backbones)
        ax.invert_yaxis()
        ax.set_xlabel(metric)
        ax.grid(axis="x", alpha=0.3)
    if not ids:
        axes[0].text(0.5, 0.5, "no Table 6 row chosen (paper.rows)", ha="center", transform=axes[0].transAxes)
    else:
        axes[1].legend(loc="lower right", fontsize=7)
    fig.suptitle("Table 6: frozen backbone x probe on NYUv2 test (black mark: published)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def write_report(
    base,
    *,
    rows_file: Path | str = ROWS_FILE,
    out_json: Path | str,
    out_markdown: Path | str,
    out_figure: Path | str,
    out_backbones_figure: Path | str,
) -> dict[str, Any]:
    """The report stage: read every run's metrics of the chosen rows (``base``: the validated params.yaml),
    write ``metrics/paper.json``, ``reports/paper.md``, the figure and Table 6's figure; returns the summary."""
    rows = load_rows(rows_file)
    seeds = list(base.paper.seeds)
    chosen = select_rows(rows, base.paper.rows)
    results = {}
    for row_id in chosen:
        row = rows[row_id]
        if not row.runs:
            continue
        if row.kind == "lower_bound":
            files = [run_metrics_path(LOWER_BOUND, seed) for seed in seeds]
        else:
            files = metrics_files(rows, row_id, base)
        results[row_id] = [read_json(f) for f in files]
    summary = aggregate(rows, chosen, results)
    write_json_atomic(out_json, summary)
    write_text_atomic(out_markdown, report_markdown(rows, summary, seeds=seeds))
    save_figure(out_figure, rows, summary)
    save_backbone_figure(out_backbones_figure, rows, summary)
    return summary
