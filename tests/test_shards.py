"""The paper grid split over machines: the cost of a run, the balanced partition, SHARD refused, the SLURM script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from depthcore.paper.shards import NYUV2_TEST_IMAGES, ShardError, parse_shard, partition, row_costs, shard_of

REPO = Path(__file__).resolve().parents[1]


def test_cost_of_a_row_by_hand_and_the_median_for_an_unmeasured_one():
    bench = {
        "nyuv2_train_images": 100,
        "row_types": [
            {"rows": ["a", "b"], "epochs": 2, "seconds_per_image": 0.5},
            {"rows": ["c"], "epochs": 10, "seconds_per_image": 1.0},
        ],
    }
    costs = row_costs(bench, ["a", "b", "c", "new"])
    assert NYUV2_TEST_IMAGES == 654
    assert costs["a"] == costs["b"] == 0.5 * (2 * 100 + 654)  # 427 s
    assert costs["c"] == 1.0 * (10 * 100 + 654)  # 1654 s
    assert costs["new"] == 427.0  # the median of the measured rows' runs (427, 427, 1654)
    assert set(costs) == {"a", "b", "c", "new"}


def test_cost_from_the_shipped_benchmark():
    import json

    bench = json.loads((REPO / "benchmarks/results/paper.json").read_text())
    costs = row_costs(bench, ["t3_l1", "t4_l2_text"])
    assert costs["t3_l1"] == pytest.approx(6.727651742001399 * (90 * 716 + 654))
    assert costs["t4_l2_text"] == pytest.approx(0.01509745200019097 * (30 * 716 + 654))


def test_a_benchmark_without_timings_is_refused():
    with pytest.raises(ShardError, match="benchmarks/paper.py"):
        row_costs({"row_types": []}, ["a"])


COSTS = {"a": 7.0, "b": 5.0, "c": 4.0, "d": 3.0, "e": 3.0}
RUNS = [(row, seed) for row in COSTS for seed in (0, 1)]  # 10 runs, 44 s in all


def test_partition_is_disjoint_covering_and_the_lpt_assignment_by_hand():
    shards = partition(RUNS, COSTS, 3)
    # LPT by hand: a0 a1 b0 b1 c0 c1 d0 d1 e0 e1 (costliest first, ties by row then seed), each to the lightest
    # shard (ties to the lowest): a0->1 (7) a1->2 (7) b0->3 (5) b1->3 (10) c0->1 (11) c1->2 (11) d0->3 (13)
    # d1->1 (14) e0->2 (14) e1->3 (16)
    assert shards == [
        [("a", 0), ("c", 0), ("d", 1)],
        [("a", 1), ("c", 1), ("e", 0)],
        [("b", 0), ("b", 1), ("d", 0), ("e", 1)],
    ]
    flat = [run for shard in shards for run in shard]
    assert sorted(flat) == sorted(RUNS) and len(flat) == len(set(flat))  # disjoint, covering
    loads = [sum(COSTS[row] for row, _ in shard) for shard in shards]
    assert loads == [14.0, 14.0, 16.0] and max(loads) - min(loads) <= max(COSTS.values())
    assert shard_of(shards)[("e", 1)] == 3


def test_partition_is_deterministic_and_handles_more_shards_than_runs():
    assert partition(RUNS, COSTS, 3) == partition(list(reversed(RUNS)), COSTS, 3)
    assert partition(RUNS, COSTS, 1) == [sorted(RUNS)]
    many = partition([("a", 0), ("b", 0)], COSTS, 4)
    assert many == [[("a", 0)], [("b", 0)], [], []]
    with pytest.raises(ShardError):
        partition(RUNS, COSTS, 0)


@pytest.mark.parametrize("text", ["1/2", "2/2", " 3 / 8 ", "1/1"])
def test_good_shards(text):
    k, n = parse_shard(text)
    assert 1 <= k <= n


@pytest.mark.parametrize("text", ["", "0/2", "3/2", "2", "1/0", "a/b", "-1/2", "1/2/3", "1.5/2"])
def test_bad_shards_are_refused_naming_the_form(text):
    with pytest.raises(ShardError, match=r"expected k/N with 1 <= k <= N, e.g. `make paper SHARD=1/4`"):
        parse_shard(text)


def test_grid_tool_refuses_a_bad_shard_at_once_in_one_line():
    proc = subprocess.run(
        [sys.executable, "paper/grid.py", "run", "--shard", "3/2"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 1 and proc.stderr.startswith("error: SHARD='3/2': expected k/N")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_slurm_script_is_bash_and_runs_one_shard_per_array_task():
    script = REPO / "paper/slurm.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert 'make paper SHARD="${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}"' in text
    assert "#SBATCH --gres=gpu:1" in text and "make paper-collect" in text and "dvc remote add -d" in text
