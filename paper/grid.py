"""The paper grid tool (what `make paper` and `make results` run).

python paper/grid.py write            # paper/dvc.yaml from paper/rows.yaml and params.yaml
python paper/grid.py run [--jobs N]   # write, then run the grid: N > 1 runs N (row, seed) trainings at
                                      # once through DVC's experiment queue, then dvc repro collects
python paper/grid.py readme           # README's results section from reports/paper.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from typing import Any  # noqa: E402

from depthcore.deps import code_deps  # noqa: E402
from depthcore.inputs import needed_inputs  # noqa: E402
from depthcore.paper import (  # noqa: E402
    DVC_FILE,
    ROWS_FILE,
    RUN_METRICS_DIR,
    Row,
    load_rows,
    lower_bound_path,
    row_params,
    run_paths,
    select_rows,
    variant_id,
    variant_paths,
)
from depthcore.params import Params, load_params, validate_params  # noqa: E402
from depthcore.paths import Paths  # noqa: E402

STAGE_RUNNER = "paper/stage.py"

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
# The grid declares its metrics and figures as plain uncached outputs, not `metrics`/`plots`: `dvc metrics
# show/diff` and `dvc plots show` stay about the main pipeline (no warnings for the grid's files before
# `make paper`, no hundred rows of its runs); its numbers are read in reports/paper.md or with
# `dvc metrics show metrics/paper.json`.
EXTRA_OUTS = {"segments": ("segments_metrics",), "zeroshot": ("zeroshot_metrics", "zeroshot_figure")}


def uncached(paths) -> list[dict[str, dict[str, bool]]]:
    return [{str(p): {"cache": False}} for p in paths]


def grid_dvc_yaml(raw: dict[str, Any], rows: dict[str, Row], main_stages: dict[str, Any]) -> str:
    """``paper/dvc.yaml`` for the rows ``paper.rows`` of params.yaml (``raw``): the variants they need,
    then per computed row a train and an evaluate stage (a ``matrix`` over ``paper.seeds``), the lower
    bound, and the report. ``main_stages``: the stages of the main dvc.yaml (their code deps and params are
    reused: a grid stage runs the same script)."""
    base = validate_params(raw)
    chosen = select_rows(rows, (raw.get("paper") or {}).get("rows"))
    stages: dict[str, Any] = {}

    def code(stage: str) -> list[str]:
        """Code deps of a grid stage: paper/stage.py and the stage's own script."""
        files = set(code_deps(STAGE_RUNNER)) | set(code_deps(f"stages/{stage}.py"))
        return [STAGE_RUNNER] + sorted(files - {STAGE_RUNNER})

    def data_deps(stage: str, paths: Paths) -> list[str]:
        """The main stage's data deps, moved to ``paths`` (variants) where they differ."""
        moved = {str(getattr(Paths(), f)): str(getattr(paths, f)) for f in vars(Paths())}
        return [moved.get(d, d) for d in main_stages[stage]["deps"] if not d.startswith(("stages/", "depthcore/"))]

    reports: list[str] = []
    for row_id in chosen:
        row = rows[row_id]
        if not row.runs or row.kind == "lower_bound":
            continue
        params = row_params(raw, row_id, row)
        paths = variant_paths(Paths(), params, base)
        for stage in ("segments", "pairs", "clip_head", "zeroshot"):
            vid = variant_id(stage, params, base)
            if vid is None or f"variant-{vid}" in stages:
                continue
            outs = {
                "segments": [paths.segments],
                "pairs": [paths.pairs],
                "clip_head": [paths.clip_head],
                "zeroshot": [paths.zeroshot],
            }[stage]
            spec = {
                "cmd": f"python {STAGE_RUNNER} {stage} --row {row_id}",
                "wdir": "..",
                "deps": code(stage) + data_deps(stage, paths),
                "params": list(main_stages[stage].get("params", [])) + [{str(ROWS_FILE): [row_id]}],
                "outs": [str(p) for p in outs] + uncached(getattr(paths, f) for f in EXTRA_OUTS.get(stage, ())),
            }
            stages[f"variant-{vid}"] = spec
        if row.kind == "zeroshot":
            reports.append(str(paths.zeroshot_metrics))
            continue
        seed = "${item.seed}"
        run = run_paths(row_id, seed, params, base)  # type: ignore[arg-type]
        inputs = [str(p) for p in needed_inputs(params, run)]
        settings = [
            "adapter",
            "loss",
            f"adapters.{params.adapter}",
            "train",
            "eval.min_depth",
            "eval.max_depth",
            "eval.median_scaling",
            "paper.max_epochs",
        ]
        settings += ["ssl.alpha", "ssl.smoothness"] if params.loss == "ssl" else []
        stages[f"train-{row_id}"] = {
            "matrix": {"seed": "${paper.seeds}"},
            "wdir": "..",
            "cmd": f"python {STAGE_RUNNER} train --row {row_id} --seed {seed}",
            "deps": code("train") + inputs,
            "params": settings + [{str(ROWS_FILE): [row_id]}],
            "outs": [str(run.model), str(run.train_metrics), str(run.train_curves)],
        }
        stages[f"evaluate-{row_id}"] = {
            "matrix": {"seed": "${paper.seeds}"},
            "wdir": "..",
            "cmd": f"python {STAGE_RUNNER} evaluate --row {row_id} --seed {seed}",
            "deps": code("evaluate") + [str(run.model)] + inputs,
            "params": ["adapter", "eval", {str(ROWS_FILE): [row_id]}],
            "outs": [str(run.predictions), str(run.eval_figure)] + uncached([run.eval_per_image, run.eval_metrics]),
        }
    if any(rows[r].kind == "lower_bound" for r in chosen):
        stages["lower_bound"] = {
            "matrix": {"seed": "${paper.seeds}"},
            "wdir": "..",
            "cmd": f"python {STAGE_RUNNER} lower_bound --seed ${{item.seed}}",
            "deps": code("lower_bound") + [str(Paths().dataset)],
            "params": ["eval"],
            "outs": uncached([lower_bound_path("${item.seed}")]),
        }
    stages["report"] = {
        "cmd": f"python {STAGE_RUNNER} paper_report",
        "wdir": "..",
        "deps": code("paper_report") + [str(ROWS_FILE), str(RUN_METRICS_DIR), *sorted(set(reports))],
        "params": ["paper.rows", "paper.seeds"],
        "outs": uncached([Paths().paper_metrics, Paths().paper_report, Paths().paper_figure]),
    }
    header = (
        "# Generated by `make paper` (python paper/grid.py write) from paper/rows.yaml and params.yaml: do not edit.\n"
        "# One train and one evaluate stage per row (a matrix over paper.seeds), the upstream variants some rows\n"
        "# need, the lower bound, and the report. Run: make paper (or dvc repro paper/dvc.yaml).\n"
    )
    return header + yaml.safe_dump({"vars": ["../params.yaml:paper"], "stages": stages}, sort_keys=False, width=120)


def queue_targets(grid: dict[str, Any], params: Params) -> list[str]:
    """The evaluate stages of ``grid`` (the parsed paper/dvc.yaml), one per (row, seed): one experiment each."""
    seeds = list(params.paper.seeds)
    names = [name for name in grid["stages"] if name.startswith("evaluate-")]
    return [f"{name}@{seed}" for name in names for seed in seeds]


def write() -> str:
    raw = load_params(REPO / "params.yaml").model_dump(mode="json")
    main_stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    text = grid_dvc_yaml(raw, load_rows(REPO / "paper/rows.yaml"), main_stages)
    (REPO / DVC_FILE).write_text(text)
    return text


def dvc(*args: str) -> None:
    subprocess.run(["dvc", *args], cwd=REPO, check=True)


def run(jobs: int) -> None:
    write()
    if jobs > 1:  # DVC's own queue: each experiment reproduces one run; the run-cache brings the results back
        for target in queue_targets(yaml.safe_load((REPO / DVC_FILE).read_text()), load_params(REPO / "params.yaml")):
            dvc("exp", "run", "--queue", f"{DVC_FILE}:{target}")
        dvc("exp", "run", "--run-all", "--jobs", str(jobs))
    dvc("repro", str(DVC_FILE))


def readme() -> None:
    readme = (REPO / "README.md").read_text()
    start, end = readme.index(README_START) + len(README_START), readme.index(README_END)
    table = (REPO / "reports/paper.md").read_text()
    (REPO / "README.md").write_text(readme[:start] + "\n" + table.strip() + "\n" + readme[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["write", "run", "readme"])
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    {"write": write, "run": lambda: run(args.jobs), "readme": readme}[args.command]()


if __name__ == "__main__":
    main()
