"""Run a stage of the paper grid: `python paper/stage.py <stage> [--row ROW] [--path FIELD=PATH ...] [--seed K]`.

The stage's own script (stages/<stage>.py) does the work; here its params are params.yaml with the row's
settings of paper/rows.yaml (and the seed), and its paths the main pipeline's with the row's upstream variants
moved (``--path``, written by the generator, depthcore/paper/grid.py) and, with ``--seed``, the run's own
outputs. paper/dvc.yaml calls this; so can a person.

Under `make paper-collect` (``DEPTHCORE_PAPER_COLLECT`` set to a file) every stage but the report refuses: DVC
runs one only when its results are not on the remote, and collecting never computes a run. The refused stage is
appended to that file for the collector's message.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "stages"))

from common import PARAMS_FILE, Stage, run  # noqa: E402

from depthcore.config.params import load_params  # noqa: E402
from depthcore.config.paths import Paths  # noqa: E402
from depthcore.paper.rows import PaperError, load_rows, row_params  # noqa: E402


def grid_stage(row_id: str | None, seed: int | None, moved: list[str]) -> Stage:
    params = load_params(PARAMS_FILE)  # the whole file, validated before any work
    paths = replace(Paths(), **dict(_field(item) for item in moved))
    if row_id is not None:
        rows = load_rows()
        if row_id not in rows:
            raise PaperError(f"unknown row {row_id!r}; valid rows are {list(rows)}")
        params = row_params(params, row_id, rows[row_id], seed=seed or 0)
        paths = paths if seed is None else paths.for_run(row_id, seed)
    elif seed is not None:
        params = load_params(PARAMS_FILE, {"seed": seed})
    return Stage(params=params, paths=paths)


def _field(item: str) -> tuple[str, Path]:
    name, _, path = item.partition("=")
    if name not in Paths.__dataclass_fields__ or not path:
        raise PaperError(f"--path {item!r}: expected FIELD=PATH with FIELD one of {list(Paths.__dataclass_fields__)}")
    return name, Path(path)


COLLECT_ENV = "DEPTHCORE_PAPER_COLLECT"  # paper/grid.py collect sets it
COLLECTED = ("paper_report",)  # what the collector computes itself


def refuse_under_collect(stage: str, row_id: str | None, seed: int | None) -> None:
    """Exit 1 with one line if the collector runs a stage that computes a run (its results are not on the remote)."""
    record = os.environ.get(COLLECT_ENV)
    if not record or stage in COLLECTED:
        return
    what = " ".join(str(part) for part in (stage, row_id, seed) if part is not None)
    with open(record, "a") as file:
        file.write(what + "\n")
    print(f"error: `make paper-collect` computes nothing: {what!r} is not on the remote", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", help="a script of stages/, e.g. train")
    parser.add_argument("--row", help="a row of paper/rows.yaml")
    parser.add_argument("--path", action="append", default=[], help="FIELD=PATH: where the row's variant of FIELD is")
    parser.add_argument("--seed", type=int, help="the seed of the row's run")
    args = parser.parse_args()
    refuse_under_collect(args.stage, args.row, args.seed)
    spec = importlib.util.spec_from_file_location(args.stage, REPO / "stages" / f"{args.stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run(module.main, lambda: grid_stage(args.row, args.seed, args.path))


if __name__ == "__main__":
    main()
