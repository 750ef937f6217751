"""The paper grid split over machines: ``make paper SHARD=k/N`` runs the k-th of N disjoint parts.

The grid's (row, seed) trainings are spread over N shards by their measured cost (the per row type timings of
``benchmarks/results/paper.json``, written by ``benchmarks/paper.py``), with the greedy longest-processing-time
rule: the costliest run first, each to the shard with the least work so far. Everything here is a pure function
of what it is given (no params.yaml, no command line): ``paper/grid.py`` passes the values in.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from depthcore.errors import DepthcoreError

NYUV2_TEST_IMAGES = 654  # the official test split: every run evaluates on it once
Run = tuple[str, int]  # (row id, seed)


class ShardError(DepthcoreError, ValueError):
    """A SHARD that is not ``k/N`` with ``1 <= k <= N``, or a benchmark file without the timings needed."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"k/N"`` -> ``(k, N)`` (1-based k); ShardError naming the expected form otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    k, n = (int(match[1]), int(match[2])) if match else (0, 0)
    if not match or not 1 <= k <= n:
        raise ShardError(f"SHARD={text!r}: expected k/N with 1 <= k <= N, e.g. `make paper SHARD=1/4`")
    return k, n


def row_costs(bench: Mapping[str, Any], rows: Iterable[str]) -> dict[str, float]:
    """Row id -> the seconds one (row, seed) run takes, for each of ``rows``.

    ``bench`` is benchmarks/results/paper.json: ``nyuv2_train_images`` and per row type ``rows``, ``epochs`` and
    ``seconds_per_image`` (seconds per image of one training step). A run costs seconds_per_image x (epochs x
    nyuv2_train_images + NYUV2_TEST_IMAGES) (evaluation counted as one pass over the test images at the training
    rate, an overestimate that keeps short runs from looking free). A row the benchmark does not list costs the
    median of the listed rows' runs.
    """
    try:
        train_images = int(bench["nyuv2_train_images"])
        measured = {
            row: float(kind["seconds_per_image"]) * (int(kind["epochs"]) * train_images + NYUV2_TEST_IMAGES)
            for kind in bench["row_types"]
            for row in kind["rows"]
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ShardError(f"the benchmark results lack {exc} (rerun `python benchmarks/paper.py`)") from None
    if not measured:
        raise ShardError("the benchmark results list no row types (rerun `python benchmarks/paper.py`)")
    median = statistics.median(measured.values())
    return {row: measured.get(row, median) for row in rows}


def partition(runs: Iterable[Run], costs: Mapping[str, float], n: int) -> list[list[Run]]:
    """``runs`` split into ``n`` disjoint lists covering them all (shard k is element k - 1), balanced by
    ``costs`` (row id -> seconds per run) with the greedy longest-processing-time rule. Deterministic: runs are
    placed costliest first, equal costs by (row id, seed); each goes to the shard with the least total seconds
    so far, equal totals to the lowest shard. Each list comes back sorted by (row id, seed)."""
    if n < 1:
        raise ShardError(f"{n} shards: expected at least 1")
    shards: list[list[Run]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for row, seed in sorted(set(runs), key=lambda run: (-costs[run[0]], run[0], run[1])):
        k = min(range(n), key=lambda i: (loads[i], i))
        shards[k].append((row, seed))
        loads[k] += costs[row]
    return [sorted(shard) for shard in shards]


def shard_of(shards: list[list[Run]]) -> dict[Run, int]:
    """(row, seed) -> its 1-based shard, for the lists :func:`partition` gives."""
    return {run: k for k, shard in enumerate(shards, start=1) for run in shard}
