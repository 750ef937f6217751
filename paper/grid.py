"""The paper grid tool (what `make paper`, `make paper-grid` and `make results` run).

python paper/grid.py write            # paper/dvc.yaml from paper/rows.yaml and params.yaml
python paper/grid.py check            # the grid's check stage: params, rows and paper/dvc.yaml up to date
python paper/grid.py run [--jobs N]   # write, then run the grid: N > 1 runs N (row, seed) trainings at
                                      # once through DVC's experiment queue, then dvc repro collects
python paper/grid.py run --shard k/N  # only the k-th of N parts of the (row, seed) runs (balanced by the cost of
                                      # benchmarks/results/paper.json; part 1 also the cheap stages), pushed with
                                      # DVC's run-cache to the default remote
python paper/grid.py collect [--shards N]  # the report from the runs on the remote, training nothing: refuses,
                                      # naming the missing runs (and with N their shards), if any is not there
python paper/grid.py readme           # README's results section from reports/paper.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depthcore.config.params import load_params  # noqa: E402
from depthcore.config.paths import (  # noqa: E402
    GRID_DVC_FILE,
    PARAMS_FILE,
    ROWS_FILE,
    Paths,
    run_metrics_path,  # noqa: E402
)
from depthcore.errors import DepthcoreError  # noqa: E402
from depthcore.io import write_text_atomic  # noqa: E402
from depthcore.paper.grid import (  # noqa: E402
    cheap_targets,
    check_grid,
    grid_dvc_yaml,
    queue_targets,
    run_target,
    trained_runs,
)
from depthcore.paper.rows import load_rows  # noqa: E402
from depthcore.paper.shards import ShardError, parse_shard, partition, row_costs, shard_of  # noqa: E402

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
BENCH_FILE = Path("benchmarks/results/paper.json")  # measured seconds per training image per row type
COLLECT_ENV = "DEPTHCORE_PAPER_COLLECT"  # set by collect: paper/stage.py then refuses to compute a run


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


def run(jobs: int, shard: str | None = None) -> None:
    if shard is not None:
        k, n = parse_shard(shard)
        require_remote(f"make paper SHARD={shard}")
    write()
    params, rows = load_params(REPO / PARAMS_FILE), load_rows(REPO / ROWS_FILE)
    queued = queue_targets(params, rows)
    targets = [str(GRID_DVC_FILE)]
    if shard is not None:
        mine = shards(params, rows, n)[k - 1]
        queued = [run_target(row, seed) for row, seed in mine]
        targets = (cheap_targets(params, rows) if k == 1 else []) + queued
        print(f"shard {k}/{n}: {len(mine)} runs: " + ", ".join(f"{row}@{seed}" for row, seed in mine))
    if jobs > 1 and queued:  # DVC's own queue: each experiment reproduces one run; the run-cache brings it back
        for target in queued:
            dvc("exp", "run", "--queue", target)
        dvc("exp", "run", "--run-all", "--jobs", str(jobs))
    if shard is None:
        dvc("repro", *targets)
    elif targets:  # --pull: what other shards already pushed (the main pipeline's stages too) is restored, not run
        dvc("repro", "--pull", *targets)
        # the run-cache entries alone travel with --run-cache: --with-deps pushes the outputs they restore
        dvc("push", "--run-cache", "--with-deps", *targets)
    subprocess.run([sys.executable, "-m", "depthcore.pipeline", "partials", "--remove"], cwd=REPO, check=True)


def shards(params, rows, n: int) -> list[list[tuple[str, int]]]:
    """The grid's trained (row, seed) runs in ``n`` parts, balanced by the benchmark's cost per row."""
    runs = trained_runs(params, rows)
    bench = json.loads((REPO / BENCH_FILE).read_text())
    return partition(runs, row_costs(bench, {row for row, _ in runs}), n)


def require_remote(command: str) -> None:
    """ShardError naming the fix unless DVC has a default remote (where shards push and the collector pulls)."""
    proc = subprocess.run(["dvc", "remote", "default"], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ShardError(
            f"`{command}` needs a default DVC remote that every machine reaches: "
            "`dvc remote add -d storage /path/or/url` (then commit .dvc/config)"
        )


def collect(n: int | None) -> None:
    """The report from the runs on the remote: ``dvc repro --pull`` restores every grid stage from the run-cache
    the shards pushed; a stage DVC would run instead refuses (paper/stage.py under COLLECT_ENV), and the runs whose
    results did not come back are named with the shard that makes them."""
    require_remote("make paper-collect")
    write()
    params, rows = load_params(REPO / PARAMS_FILE), load_rows(REPO / ROWS_FILE)
    with tempfile.NamedTemporaryFile("r", suffix=".refused") as refused:
        env = os.environ | {COLLECT_ENV: refused.name}
        proc = subprocess.run(["dvc", "repro", "--pull", "--keep-going", str(GRID_DVC_FILE)], cwd=REPO, env=env)
        stopped = [line.strip() for line in refused.read().splitlines() if line.strip()]
    if proc.returncode == 0 and not stopped:
        subprocess.run([sys.executable, "-m", "depthcore.pipeline", "partials", "--remove"], cwd=REPO, check=True)
        print(f"collected every run: {Paths().paper_metrics}, {Paths().paper_report}, {Paths().paper_figure}")
        return
    owner = shard_of(shards(params, rows, n)) if n else {}
    missing = [run for run in trained_runs(params, rows) if not (REPO / run_metrics_path(*run)).exists()]
    named = [
        f"{row}@{seed} (`make paper SHARD={owner[row, seed]}/{n}`)" if owner else f"{row}@{seed}"
        for row, seed in missing
    ]
    if any(line.split()[0] not in ("train", "evaluate") for line in stopped):  # a variant or the lower bound
        named.append(f"the cheap stages (`make paper SHARD=1/{n or 'N'}`)")
    how = "" if owner else " (run the shard `make paper SHARD=k/N` that holds each; --shards N names it)"
    raise ShardError(
        f"the remote lacks {len(missing)} of {len(trained_runs(params, rows))} runs, nothing was trained: "
        + (", ".join(named) or "see DVC's errors above")
        + how
    )


def readme() -> None:
    readme = (REPO / "README.md").read_text()
    start, end = readme.index(README_START) + len(README_START), readme.index(README_END)
    table = (REPO / Paths().paper_report).read_text()
    (REPO / "README.md").write_text(readme[:start] + "\n" + table.strip() + "\n" + readme[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["write", "check", "run", "collect", "readme"])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--shard", help="run: k/N, the k-th of N parts of the grid, pushed to the DVC remote")
    parser.add_argument("--shards", type=int, help="collect: N, the number of shards (names a missing run's shard)")
    args = parser.parse_args()
    commands = {
        "write": write,
        "check": check,
        "run": lambda: run(args.jobs, args.shard),
        "collect": lambda: collect(args.shards),
        "readme": readme,
    }
    try:
        commands[args.command]()
    except DepthcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except subprocess.CalledProcessError as exc:
        print(f"error: {' '.join(exc.cmd)} failed (exit {exc.returncode}; its messages are above)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
