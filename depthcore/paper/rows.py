"""The paper grid's rows: what each row runs, with which params, reading which artifacts.

Rows are defined once in ``paper/rows.yaml``: for each row its table, label, the published numbers and
``params``, dotted params.yaml keys set for that row's runs. A row either trains (an adapter and a loss, both
set by the row, run once per seed), evaluates the zero-shot predictions (``kind: zeroshot``), evaluates uniform
random depth (``kind: lower_bound``, per seed), is the same run as another row (``same_as``) or is cited from
other work (``cited``: shown, never run).

The grid reuses the main pipeline's dataset, weights and CLIP features; a row that needs another upstream
artifact gets a variant of it (:mod:`depthcore.paper.grid`). This module is what a grid run needs to know of its
row, and nothing of variants, pipelines or reports: the grid's training stages depend on it alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from depthcore.config.overrides import with_overrides
from depthcore.config.params import Params, validate_params
from depthcore.config.paths import ROWS_FILE
from depthcore.errors import ConfigError, DepthcoreError

PUBLISHED_METRICS = ("d1", "d2", "d3", "abs_rel", "rmse")
PUBLISHED_LOG_METRIC = {"log10": "log10", "paper_rmse_log": "rmse_log"}  # published key -> our metric
LOWER_BOUND = "t1_lower_bound"
# Params a row may not set: the grid reuses the main pipeline's dataset, weights, features and protocol as they are.
FIXED = (
    "data.",
    "clip.model",
    "clip.pretrained",
    "clip.init_seed",
    "sam.model",
    "sam.pretrained",
    "sam.init_seed",
    "runtime.",
    "paper.",
    "seed",
    "eval.",
)
WEIGHTS_KEYS = ("pretrained", "init_seed")  # of backbones.<name>: which weights, fixed for the whole study
# What a trained row must set itself, so that the main pipeline's choice never changes it.
ROW_OWN = ("adapter", "loss")


PROTOCOLS = ("paper", "field")
# Table 6 on the field's protocol (docs/probes.md "The field's protocol"): a ``protocol: field`` row's runs train on
# the raw NYUv2 frames (``paper.field_source``) with the frozen backbone run live, so that the references' random
# crops and colour augmentation reach it, and are scored on the whole frame as the references score theirs; the row
# itself sets the probe, its recipe and the backbone.
FIELD_FEATURES = "live"
FIELD_EVAL_FRAME = "full"


class PaperError(DepthcoreError, ValueError):
    """A row is unknown, contradicts itself, sets a fixed param or lacks a published metric."""


class Row(BaseModel):
    """One result row of ``paper/rows.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: int
    label: str
    kind: Literal["train", "zeroshot", "lower_bound"] = "train"
    protocol: Literal[PROTOCOLS] = "paper"  # type: ignore[valid-type]
    params: dict[str, Any] = {}
    published: dict[str, float | None] | None = None
    source: str | None = None  # where the published numbers come from, when not the paper we reproduce
    published_protocol: str | None = None  # how the published numbers were measured, when not as our runs are
    paper_row: str | None = None  # a field row: the Table 6 row of the same backbone and probe on the paper's data
    same_as: str | None = None
    cited: bool = False

    @model_validator(mode="after")
    def _one_role(self) -> Row:
        if self.cited and (self.params or self.same_as or self.kind != "train"):
            raise ValueError("a cited row is only shown: it takes no params, same_as or kind")
        if self.same_as and (self.params or self.published):
            raise ValueError("a same_as row takes its numbers from the row it names: no params or published")
        if self.runs and self.kind == "train" and any(key not in self.params for key in ROW_OWN):
            raise ValueError(f"a trained row sets {list(ROW_OWN)} itself (params.yaml's are the main pipeline's)")
        if self.protocol == "field" and (self.table != 6 or self.kind != "train" or not self.runs):
            raise ValueError("a field-protocol row is a trained row of Table 6")
        if self.paper_row is not None and self.protocol != "field":
            raise ValueError("only a field-protocol row names its paper_row (its low-data counterpart)")
        if self.published is not None and self.protocol == "field" and not (self.source and self.published_protocol):
            raise ValueError("a field row's published numbers name their source and the protocol they were measured on")
        return self

    @property
    def runs(self) -> bool:
        """Whether the grid computes this row itself (not cited, not the same run as another row)."""
        return not self.cited and self.same_as is None


def load_rows(path: Path | str = ROWS_FILE) -> dict[str, Row]:
    """The rows of ``path`` (row id -> Row), each checked: its published numbers name every metric of its
    table, a ``same_as`` names a row that runs."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PaperError(f"{path} cannot be read ({exc})") from None
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
        twin = rows.get(row.paper_row) if row.paper_row else None
        if row.paper_row is not None and (twin is None or twin.table != 6 or twin.protocol != "paper"):
            raise PaperError(f"{path}: row {row_id!r}: paper_row {row.paper_row!r} is not a paper-protocol Table 6 row")
    return rows


def protocol_overrides(base: Params, row: Row) -> dict[str, Any]:
    """What ``row``'s protocol sets over params.yaml (``base``): nothing for the paper's; for the field's, the
    raw-frame data source ``paper.field_source``, live features and full-frame evaluation."""
    if row.protocol == "field":
        return {"data.source": base.paper.field_source, "features": FIELD_FEATURES, "eval.frame": FIELD_EVAL_FRAME}
    return {}


def select_rows(rows: dict[str, Row], selection: list[str] | tuple[str, ...] | None) -> list[str]:
    """The row ids of ``paper.rows`` (None: every row), plus the rows their ``same_as`` point to."""
    if selection is None:
        return list(rows)
    unknown = [row_id for row_id in selection if row_id not in rows]
    if unknown:
        raise PaperError(f"params 'paper.rows': unknown row(s) {unknown}; valid rows are {list(rows)}")
    chosen = list(dict.fromkeys(selection))
    chosen += [rows[r].same_as for r in chosen if rows[r].same_as and rows[r].same_as not in chosen]
    return chosen


def check_paper(base: Params, rows_file: Path | str = ROWS_FILE) -> None:
    """The ``paper`` section of params.yaml (``base``) and ``rows_file`` checked with the calls ``make paper`` makes
    when it builds the grid (:func:`depthcore.paper.grid.grid_stages`): the rows load and ``paper.rows`` names rows
    that exist (the section's values themselves are validated with the rest of params.yaml). The main pipeline's
    ``check`` stage runs it, so a bad ``paper.*`` fails every ``dvc repro``, not only ``make paper``. PaperError
    naming the problem.

    Each row's params composed over params.yaml (:func:`row_params`) are checked by ``make paper`` alone: they
    depend on the main settings, which an experiment on the main pipeline may change (``dvc exp run -S
    backbone=dinov2_vits14`` makes the Table 1-5 rows, all on clip_rn50, unfit) without touching the study."""
    select_rows(load_rows(rows_file), base.paper.rows)


def row_params(base: Params, row_id: str, row: Row, *, seed: int = 0) -> Params:
    """The validated params of a run of ``row``: params.yaml (``base``), then the row's params, the seed and the
    grid's epoch cap (``paper.max_epochs``, the lower of it and ``train.max_epochs``). Errors name the row."""
    fixed = [key for key in row.params if key.startswith(FIXED)]
    fixed += [key for key in row.params if key.startswith("backbones.") and key.rpartition(".")[2] in WEIGHTS_KEYS]
    if fixed:
        raise PaperError(
            f"row {row_id!r} sets {fixed}, which the grid does not vary (it reuses the main pipeline's dataset, "
            "weights, features and protocol; a field row's data come from paper.field_source): set them in "
            "params.yaml for the whole study instead"
        )
    overrides = protocol_overrides(base, row) | dict(row.params) | {"seed": seed}
    cap, train_cap = base.paper.max_epochs, base.train.max_epochs
    if cap is not None:
        overrides["train.max_epochs"] = cap if train_cap is None else min(cap, train_cap)
    try:
        return validate_params(with_overrides(base.model_dump(mode="json"), overrides))
    except ConfigError as exc:
        raise PaperError(f"row {row_id!r}: {exc}") from None
