"""Run a stage of the paper grid: `python paper/stage.py <stage> [--row ROW] [--seed K]`.

The stage's own script (stages/<stage>.py) does the work; here its params are params.yaml with the row's
settings of paper/rows.yaml (and the seed), and its paths those of the row's run, or, without --seed, of
the upstream variants the row needs (depthcore.paper). paper/dvc.yaml calls this; so can a person.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "stages"))

from common import PARAMS_FILE, Stage, run  # noqa: E402

from depthcore import paper  # noqa: E402
from depthcore.params import load_params  # noqa: E402
from depthcore.paths import Paths  # noqa: E402


def grid_stage(row_id: str | None, seed: int | None) -> Stage:
    params = load_params(PARAMS_FILE)  # the whole file, validated before any work
    if row_id is None:
        return Stage(params=params if seed is None else load_params(PARAMS_FILE, {"seed": seed}))
    rows = paper.load_rows()
    if row_id not in rows:
        raise paper.PaperError(f"unknown row {row_id!r}; valid rows are {list(rows)}")
    run_params = paper.row_params(params.model_dump(mode="json"), row_id, rows[row_id], seed=seed or 0)
    if seed is None:
        return Stage(params=run_params, paths=paper.variant_paths(Paths(), run_params, params))
    return Stage(params=run_params, paths=paper.run_paths(row_id, seed, run_params, params))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", help="a script of stages/, e.g. train")
    parser.add_argument("--row", help="a row of paper/rows.yaml")
    parser.add_argument("--seed", type=int, help="the seed of the row's run")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location(args.stage, REPO / "stages" / f"{args.stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run(module.main, lambda: grid_stage(args.row, args.seed))


if __name__ == "__main__":
    main()
