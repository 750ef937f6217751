"""The paper grid tool (what `make paper`, `make paper-grid` and `make results` run).

python paper/grid.py write            # paper/dvc.yaml from paper/rows.yaml and params.yaml
python paper/grid.py check            # the grid's check stage: params, rows and paper/dvc.yaml up to date
python paper/grid.py run [--jobs N]   # write, then run the grid: N > 1 runs N (row, seed) trainings at
                                      # once through DVC's experiment queue, then dvc repro collects
python paper/grid.py readme           # README's results section from reports/paper.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depthcore.config.params import load_params  # noqa: E402
from depthcore.config.paths import GRID_DVC_FILE, PARAMS_FILE, ROWS_FILE, Paths  # noqa: E402
from depthcore.errors import DepthcoreError  # noqa: E402
from depthcore.io import write_text_atomic  # noqa: E402
from depthcore.paper.grid import check_grid, grid_dvc_yaml, queue_targets  # noqa: E402
from depthcore.paper.rows import load_rows  # noqa: E402

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def write() -> None:
    text = grid_dvc_yaml(load_params(REPO / PARAMS_FILE), load_rows(REPO / ROWS_FILE))
    (REPO / GRID_DVC_FILE).write_text(text)
    print(f"wrote {GRID_DVC_FILE}")


def check() -> None:
    check_grid(load_params(REPO / PARAMS_FILE), load_rows(REPO / ROWS_FILE), REPO / GRID_DVC_FILE)
    write_text_atomic(REPO / Paths().grid_check, f"{GRID_DVC_FILE} is what {PARAMS_FILE} and {ROWS_FILE} give\n")
    print(f"{GRID_DVC_FILE} is up to date")


def dvc(*args: str) -> None:
    subprocess.run(["dvc", *args], cwd=REPO, check=True)


def run(jobs: int) -> None:
    write()
    if jobs > 1:  # DVC's own queue: each experiment reproduces one run; the run-cache brings the results back
        for target in queue_targets(load_params(REPO / PARAMS_FILE), load_rows(REPO / ROWS_FILE)):
            dvc("exp", "run", "--queue", target)
        dvc("exp", "run", "--run-all", "--jobs", str(jobs))
    dvc("repro", str(GRID_DVC_FILE))
    subprocess.run([sys.executable, "-m", "depthcore.pipeline", "partials", "--remove"], cwd=REPO, check=True)


def readme() -> None:
    readme = (REPO / "README.md").read_text()
    start, end = readme.index(README_START) + len(README_START), readme.index(README_END)
    table = (REPO / Paths().paper_report).read_text()
    (REPO / "README.md").write_text(readme[:start] + "\n" + table.strip() + "\n" + readme[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["write", "check", "run", "readme"])
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    try:
        {"write": write, "check": check, "run": lambda: run(args.jobs), "readme": readme}[args.command]()
    except DepthcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
