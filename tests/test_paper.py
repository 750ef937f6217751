"""The paper grid: rows defined once, checked before any training; variants shared; a stale generated
paper/dvc.yaml refused; aggregation by hand (the generated file's dependencies: tests/test_dvc_yaml.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, default_raw

from depthcore.config.offline import OFFLINE
from depthcore.config.overrides import with_overrides
from depthcore.config.params import load_params, validate_params
from depthcore.paper.grid import check_grid, grid_dvc_yaml, variant_ids
from depthcore.paper.report import aggregate, report_markdown, write_report
from depthcore.paper.rows import PaperError, load_rows, row_params, select_rows

SHARED_TABLES = REPO.parent / "shared" / "paper_tables.yaml"
RUNS = {"d1": [0.5, 0.6, 0.7], "abs_rel": [0.2, 0.3, 0.4]}  # three seeds; other metrics constant 1.0


def metrics(seed: int) -> dict[str, float]:
    out = {name: 1.0 for name in ("d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")}
    return out | {name: values[seed] for name, values in RUNS.items()} | {"n_images": 7}


def test_every_published_row_is_a_row_with_its_numbers():
    rows = load_rows(REPO / "paper/rows.yaml")
    if not SHARED_TABLES.exists():
        pytest.skip(f"{SHARED_TABLES} is not next to this checkout")
    shared = yaml.safe_load(SHARED_TABLES.read_text())
    for row_id, spec in shared.items():
        assert row_id in rows, row_id
        row = rows[row_id]
        assert (
            row.table == spec["table"] and row.same_as == spec.get("same_as") and row.cited == spec.get("cited", False)
        )
        if "metrics" in spec:
            assert row.published == spec["metrics"], row_id
    ours = {r for r in rows if r not in shared}  # depthcore's own: Tables 5 and 6, and Table 1's ViT zero-shot row
    assert (
        all(rows[r].table in (5, 6) for r in ours - {"t1_depthclip_vitb16"}) and rows["t1_depthclip_vitb16"].table == 1
    )


def test_aggregation_mean_and_sample_std_by_hand(tmp_path, monkeypatch):
    rows_file = tmp_path / "rows.yaml"
    rows_file.write_text(
        "t1_lower_bound: {table: 1, label: LB, kind: lower_bound, published: {d1: 0.14, d2: 0.297, d3: 0.471, "
        "abs_rel: 1.327, log10: 0.323, rmse: 2.934}}\n"
        "t3_l1: {table: 3, label: MSA, params: {adapter: msa, loss: l1}, published: {d1: 0.573, d2: 0.856, d3: 0.956, "
        "abs_rel: 0.255, log10: 0.104, rmse: 0.804}}\n"
        "t1_msa: {table: 1, label: MSA (depth), same_as: t3_l1}\n"
        "t1_dorn: {table: 1, label: DORN, cited: true, published: {d1: 0.828, d2: 0.965, d3: 0.992, abs_rel: 0.115, "
        "log10: 0.051, rmse: 0.509}}\n"
    )
    monkeypatch.chdir(tmp_path)
    for row_id in ("t3_l1", "t1_lower_bound"):
        for seed in (0, 1, 2):
            path = Path("metrics/paper") / row_id / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(metrics(seed)))
    raw = default_raw()
    raw["paper"]["rows"] = ["t1_lower_bound", "t1_msa", "t1_dorn"]
    summary = write_report(
        validate_params(raw),
        rows_file=rows_file,
        out_json="paper.json",
        out_markdown="paper.md",
        out_figure="paper.png",
        out_backbones_figure="backbones.png",
    )
    msa = summary["t3_l1"]
    assert msa["n"] == 3 and msa["mean"]["abs_rel"] == pytest.approx(0.3) and msa["mean"]["d1"] == pytest.approx(0.6)
    # sample std (ddof 1): sqrt(((0.2 - 0.3)^2 + 0 + (0.4 - 0.3)^2) / 2) = 0.1
    assert msa["std"]["abs_rel"] == pytest.approx(0.1) and msa["std"]["rmse"] == 0.0
    assert summary["t1_msa"]["mean"] == msa["mean"] and summary["t1_msa"]["published"]["d1"] == 0.573  # same run
    assert summary["t1_dorn"] == {"published": summary["t1_dorn"]["published"], "mean": None, "std": None, "n": 0}
    assert json.loads(Path("paper.json").read_text())["t3_l1"]["std"]["abs_rel"] == pytest.approx(0.1)
    report = Path("paper.md").read_text()
    assert "| MSA (depth) | 0.600 ± 0.100 (0.573) |" in report and "| DORN (cited) | - (0.828) |" in report
    assert "| row | d1 | d2 | d3 | abs_rel | log10 | rmse | n |" in report  # named by what they compute
    assert Path("paper.png").read_bytes()[:4] == b"\x89PNG"
    one = aggregate(load_rows(rows_file), ["t3_l1"], {"t3_l1": [metrics(1)]})["t3_l1"]
    assert one["n"] == 1 and one["std"]["abs_rel"] == 0.0 and not math.isnan(one["std"]["d1"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "r: {table: 3, label: x, params: {adapter: msa, loss: l1, adapters.msa.alphaa: 1}}",
            r"row 'r': params 'adapters.msa.alphaa': unknown",
        ),
        (
            "r: {table: 3, label: x, params: {adapter: msa, loss: l1, adapters.msa.segments: pool}}",
            r"row 'r': .*only the narrow decoder",
        ),
        (
            "r: {table: 3, label: x, params: {adapter: msa, loss: l1, data.source: synthetic}}",
            r"row 'r' sets \['data.source'\], which the grid",
        ),
        (
            "r: {table: 3, label: x, kind: zeroshot, published: {d1: 0.5, abs_rel: 0.3}}",
            r"row 'r': published numbers must give",
        ),
        ("r: {table: 1, label: x, same_as: nowhere}", r"row 'r': same_as 'nowhere' is not a row that runs"),
        ("r: {table: 1, label: x, colour: red}", r"row 'r': colour: Extra inputs"),
    ],
)
def test_bad_rows_fail_before_any_training_naming_the_row(tmp_path, text, message):
    rows_file = tmp_path / "rows.yaml"
    rows_file.write_text(text + "\n")
    with pytest.raises(PaperError, match=message):
        rows = load_rows(rows_file)
        row_params(validate_params(default_raw()), "r", rows["r"])


def test_unknown_row_selection_lists_the_rows():
    rows = load_rows(REPO / "paper/rows.yaml")
    with pytest.raises(PaperError, match=r"unknown row\(s\) \['t9'\]; valid rows are \['t1_lower_bound'"):
        select_rows(rows, ["t9"])
    assert select_rows(rows, ["t1_msa"]) == ["t1_msa", "t3_l1"]  # a same_as row brings its run


def test_every_row_resolves_to_valid_params():
    rows = load_rows(REPO / "paper/rows.yaml")
    base = validate_params(default_raw())
    for row_id, row in rows.items():
        if row.runs and row.kind == "train":
            params = row_params(base, row_id, row)
            assert (params.adapter, params.loss) == (row.params["adapter"], row.params["loss"]), row_id


def test_variants_are_shared_and_follow_the_variants_they_read():
    base = load_params(REPO / "params.yaml")
    rows = load_rows()
    ids = {r: variant_ids(row_params(base, r, rows[r]), base) for r in ("t5_gt_segments", "t5_gt_segments_clip")}
    assert ids["t5_gt_segments"] == ids["t5_gt_segments_clip"] and set(ids["t5_gt_segments"]) == {"segments"}
    maskclip = variant_ids(row_params(base, "t5_learned_maskclip", rows["t5_learned_maskclip"]), base)
    assert set(maskclip) == {"clip_head", "zeroshot", "zeroshot_report"}  # the head's variant moves the rest
    assert variant_ids(row_params(base, "t3_l1", rows["t3_l1"]), base) == {}


def test_a_stale_grid_is_refused_naming_the_command(tmp_path):
    base = load_params(REPO / "params.yaml")
    rows = load_rows()
    current = tmp_path / "current.yaml"
    current.write_text(grid_dvc_yaml(base, rows))
    check_grid(base, rows, current)
    with pytest.raises(PaperError, match=r"out of date .* missing \['check'"):
        check_grid(base, rows, tmp_path / "absent.yaml")  # not written yet
    stale = tmp_path / "dvc.yaml"
    stale.write_text(
        grid_dvc_yaml(validate_params(default_raw() | {"paper": base.paper.to_dict() | {"seeds": [0]}}), rows)
    )
    with pytest.raises(PaperError, match=r"out of date .* changed \['evaluate-"):
        check_grid(base, rows, stale)  # the seeds are written into the file (no params.yaml vars for DVC to parse)
    fewer = validate_params(default_raw() | {"paper": base.paper.to_dict() | {"rows": ["t3_l1"]}})
    stale.write_text(grid_dvc_yaml(fewer, rows))
    with pytest.raises(PaperError, match=r"paper/dvc.yaml is out of date .*missing \[.*`make paper-grid`"):
        check_grid(base, rows, stale)


def test_trained_rows_set_their_adapter_and_loss(tmp_path):
    rows_file = tmp_path / "rows.yaml"
    rows_file.write_text("r: {table: 3, label: x, params: {adapters.msa.alpha: 1.0}}\n")
    with pytest.raises(PaperError, match=r"row 'r': .*a trained row sets \['adapter', 'loss'\] itself"):
        load_rows(rows_file)


def test_the_check_stage_refuses_a_bad_paper_section_as_make_paper_does(tmp_path):
    """`paper.rows` naming no row of paper/rows.yaml is refused by the main pipeline's check stage (so by every
    `dvc repro`), in the words `make paper` uses, and not only by `make paper`."""
    raw = (REPO / "params.yaml").read_text()
    assert "  rows: null" in raw
    (tmp_path / "params.yaml").write_text(raw.replace("  rows: null", "  rows: [no_such_row]"))
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "rows.yaml").write_text((REPO / "paper" / "rows.yaml").read_text())
    with pytest.raises(PaperError) as grid_error:  # what `make paper` (paper/grid.py write) raises
        grid_dvc_yaml(load_params(tmp_path / "params.yaml"), load_rows(tmp_path / "paper" / "rows.yaml"))
    result = subprocess.run(  # the stage as dvc runs it: in the checkout's root
        [sys.executable, str(REPO / "stages" / "check.py")], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 1 and result.stderr == f"error: {grid_error.value}\n"
    assert "unknown row(s) ['no_such_row']" in result.stderr
    assert not (tmp_path / "data").exists()


FIELD_ROWS = (
    "p6: {table: 6, label: ViT lin (paper), params: {backbone: dinov2_vits14, adapter: linear_probe, loss: silog}}\n"
    "f6: {table: 6, label: ViT lin (field), protocol: field, paper_row: p6, source: MODEL_CARD,"
    " published_protocol: 24k raw frames, published: {d1: null, d2: null, d3: null, abs_rel: null, log10: null,"
    " rmse: 0.417}, params: {backbone: dinov2_vits14, adapter: linear_probe, loss: silog}}\n"
)


def test_field_rows_train_on_the_field_source_with_live_features_score_the_frame_and_get_the_data_variants(tmp_path):
    rows_file = tmp_path / "rows.yaml"
    rows_file.write_text(FIELD_ROWS)
    rows = load_rows(rows_file)
    base = load_params(REPO / "params.yaml")  # data.source nyuv2, paper.field_source: the raw frames
    field = row_params(base, "f6", rows["f6"])
    assert (field.data.source, field.features) == (base.paper.field_source, "live") != (base.data.source, "live")
    assert (field.eval.frame, base.eval.frame) == ("full", "crop")  # scored on the whole frame, as the references
    paper = row_params(base, "p6", rows["p6"])
    assert (paper.data.source, paper.features, paper.eval.frame) == (base.data.source, base.features, "crop")
    ids = variant_ids(field, base)
    assert {"fetch_data", "prepare", "split"} <= set(ids) and "fetch_data" not in variant_ids(paper, base)
    offline = validate_params(with_overrides(default_raw(), OFFLINE))  # offline: the rendered rooms, no data variant
    assert row_params(offline, "f6", rows["f6"]).data.source == "synthetic"
    assert "fetch_data" not in variant_ids(row_params(offline, "f6", rows["f6"]), offline)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("f: {table: 5, label: x, protocol: field, params: {adapter: msa, loss: l1}}", "a trained row of Table 6"),
        ("f: {table: 6, label: x, paper_row: p6, params: {adapter: msa, loss: l1}}", "only a field-protocol row"),
        ("f: {table: 6, label: x, protocol: field, paper_row: nowhere, params: {adapter: msa, loss: l1}}", "paper_row"),
        (
            "f: {table: 6, label: x, protocol: field, published: {d1: null, d2: null, d3: null, abs_rel: null, "
            "log10: null, rmse: 0.4}, params: {adapter: msa, loss: l1}}",
            "name their source and the protocol",
        ),
    ],
)
def test_bad_field_rows_are_refused(tmp_path, text, message):
    rows_file = tmp_path / "rows.yaml"
    rows_file.write_text(FIELD_ROWS.splitlines()[0] + "\n" + text + "\n")
    with pytest.raises(PaperError, match=message):
        load_rows(rows_file)


def test_the_field_table_keeps_ours_published_and_low_data_apart(tmp_path, monkeypatch):
    rows_file = tmp_path / "rows.yaml"
    rows_file.write_text(FIELD_ROWS)
    rows = load_rows(rows_file)
    runs = {"f6": [metrics(s) | {"rmse": 0.40 + 0.01 * s} for s in (0, 1, 2)], "p6": [metrics(0) | {"rmse": 0.7}]}
    summary = aggregate(rows, ["p6", "f6"], runs)
    assert summary["f6"]["paper_row"] == "p6" and summary["f6"]["published_protocol"] == "24k raw frames"
    report = report_markdown(rows, summary, seeds=[0, 1, 2])
    paper_part, field_part = report.split("### Table 6 on the field's protocol")
    assert "ViT lin (field)" not in paper_part and "ViT lin (paper)" in paper_part

    def cells_of(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    header = cells_of(next(line for line in field_part.splitlines() if line.startswith("| row |")))
    cells = dict(
        zip(header, cells_of(next(line for line in field_part.splitlines() if "(field) |" in line)), strict=True)
    )
    # field: mean 0.41, sample std 0.01 by hand; published 0.417 with its source; low-data: the paper row's one run
    assert cells["field: rmse"] == "0.410 ± 0.010" and cells["n"] == "3"
    assert cells["published: rmse"] == "0.417" and cells["published: source"] == "MODEL_CARD"
    assert cells["low-data: rmse"] == "0.700 ± 0.000" and cells["low-data: n"] == "1"
    assert "- ViT lin (field): 24k raw frames" in field_part
