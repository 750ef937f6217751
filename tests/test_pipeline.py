"""End-to-end: the DVC pipelines offline in temporary clones of this repository: exactly which stages run
after each kind of edit, resuming inside DVC, the paper grid through DVC's queue, bad params refused.

The tests that start from a finished offline run edit a copy of the one the session builds once (conftest's
``offline_run``); the first repro's own assertions are made on what that build recorded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from clones import (
    BIN,
    GIT_IDENTITY,
    OFFLINE_RUN,
    REPO,
    changed,
    commit,
    dvc,
    dvc_fails,
    edit,
    fails,
    make_clone,
    ran,
    restore,
    run,
    set_params,
)

from depthcore.data.store import Store
from depthcore.models.backbones.clip import create_clip_model


def test_stage_reports_bad_params_in_one_line_and_exits_non_zero(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text().replace("source: nyuv2", "source: kitti"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages/fetch_data.py")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: params 'data.source': unknown value 'kitti'")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "data").exists()


FEATURE_STAGES = {
    "check",
    "fetch_data",
    "backbone",
    "fetch_backbone",
    "fetch_sam",
    "prepare",
    "split",
    "pairs",
    "features",
    "clip_head",
    "segments",
    "segments_report",
    "zeroshot",
    "zeroshot_report",
}
RUN_STAGES = {"train_inputs", "train", "evaluate"}
UP_TO_DATE = "Data and pipelines are up to date"


@pytest.mark.slow
@pytest.mark.xdist_group("offline_run")
def test_offline_pipeline_caches_exactly(offline_run, tmp_path):
    # a fresh clone has no paper grid until make paper writes it: plain dvc status lists the main pipeline alone
    assert offline_run.status_before == FEATURE_STAGES | RUN_STAGES
    assert offline_run.ran == FEATURE_STAGES | RUN_STAGES  # the first repro runs every stage
    clone = offline_run.copy(tmp_path / "clone")
    assert not (clone / "paper/dvc.yaml").exists()
    assert UP_TO_DATE in dvc(clone, "status")
    dvc(clone, "checkout")  # exits 0: nothing listed that was never built
    for name in ("zeroshot", "segments", "train", "eval"):
        metrics = json.loads((clone / f"metrics/{name}.json").read_text())
        flat = json.dumps(metrics)
        assert metrics and '"' not in flat.replace('": ', "").replace('{"', "").replace(', "', ""), name  # numbers
    evaluation = json.loads((clone / "metrics/eval.json").read_text())
    assert evaluation["n_images"] == 2 and 0 < evaluation["abs_rel"] < 10
    assert evaluation["constant_mean"]["n_images"] == 2 and 1 < evaluation["constant_mean"]["depth_m"] < 9
    for name in ("plots/zeroshot.png", "plots/eval.png", "plots/train_curves.csv", "models/model.safetensors"):
        assert (clone / name).stat().st_size > 0, name
    assert not list((clone / "data").rglob("*.partial")) and not list((clone / "models").glob("*.resume.pt"))

    # bytecode next to the code (as Python writes it) or absent (a fresh clone) never makes a stage stale
    run([sys.executable, "-m", "compileall", "-q", "depthcore", "stages"], clone)
    assert list(clone.rglob("__pycache__"))
    assert UP_TO_DATE in dvc(clone, "status", "dvc.yaml")
    for cache in clone.rglob("__pycache__"):
        shutil.rmtree(cache)
    assert UP_TO_DATE in dvc(clone, "status", "dvc.yaml")

    # a bad params.yaml is refused by every repro, though no stage declares the key: the check stage reads the file
    text = (clone / "params.yaml").read_text()
    (clone / "params.yaml").write_text(text + "trian: {lr: 1}\n")
    assert "error: params 'trian': unknown key; valid keys are ['adapter'" in dvc_fails(clone, "repro")
    (clone / "params.yaml").write_text(text.replace("num_workers:", "num_wrokers:"))
    assert "error: params 'runtime.num_wrokers': unknown key" in dvc_fails(clone, "repro")
    restore(clone)

    # settings that cannot change an output re-run the check alone (its output does not change)
    set_params(clone, {"runtime.features_batch_size": 3, "runtime.num_workers": 1})
    assert changed(dvc(clone, "status", "dvc.yaml")) == {"check"}
    assert ran(dvc(clone, "repro")) == {"check"}

    # SAM settings re-run the SAM side only (felzenszwalb ignores them: its output, so training, is unchanged)
    set_params(clone, {"sam.model": "vit_l"})
    assert changed(dvc(clone, "status", "dvc.yaml")) == {"check", "fetch_sam"}
    assert ran(dvc(clone, "repro")) == {"check", "fetch_sam", "segments"}

    # pair and self-supervised settings never re-run a supervised training (train_inputs records what it reads)
    set_params(clone, {"pairs.max_shift_px": 5.0, "losses.ssl.alpha": 0.5})
    assert changed(dvc(clone, "status", "dvc.yaml")) == {"check", "pairs", "train_inputs"}
    assert ran(dvc(clone, "repro")) == {"check", "pairs", "train_inputs"}

    # the validation carve re-runs training (and the reports' train-mean baseline), not features
    set_params(clone, {"data.split_seed": 5})
    assert changed(dvc(clone, "status", "dvc.yaml")) == {"check", "split"}
    assert ran(dvc(clone, "repro")) == {"check", "split", "zeroshot_report"} | RUN_STAGES
    restore(clone)
    dvc(clone, "repro")

    # an experiment re-runs training and evaluation only; metrics diff is a clean table of numbers
    out = dvc(clone, "exp", "run", "-S", "adapter=clip_adapter")
    assert ran(out) == {"check"} | RUN_STAGES
    diff = dvc(clone, "metrics", "diff")
    assert "metrics/eval.json" in diff and "abs_rel" in diff and "adapter" not in diff
    assert "metrics/paper" not in diff  # the paper grid's files are plain outputs, not listed as missing metrics


def start_and_interrupt(clone: Path, sig: int, *args: str, group: bool = False) -> None:
    """Start ``dvc repro *args`` (features) and send ``sig`` once 4 images are written: to dvc alone, or
    with ``group`` to dvc and its stage (a SIGKILL of everything)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **GIT_IDENTITY}
    proc = subprocess.Popen(
        [str(BIN / "dvc"), "repro", *args],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    partial = clone / "data/features/backbone.zarr.partial/zarr.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and json.loads(partial.read_text())["attributes"].get("_items_done", 0) >= 4:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
    proc.wait()


def lock_hash(clone: Path, stage: str) -> str:
    return yaml.safe_load((clone / "dvc.lock").read_text())["stages"][stage]["outs"][0]["md5"]


@pytest.mark.slow
@pytest.mark.xdist_group("standalone")
def test_killed_stage_resumes_inside_dvc_and_local_weights_are_tracked(tmp_path):
    clone = make_clone(tmp_path, OFFLINE_RUN | {"data.synthetic.images": 8})  # killed after 4, resumed for 4
    dvc(clone, "repro", "prepare")
    start_and_interrupt(clone, signal.SIGKILL, "features", group=True)
    out = dvc(clone, "repro", "features")
    assert "resuming from image" in out and "starting afresh" not in out
    assert not (clone / "data/features/backbone.zarr.partial").exists()

    # SIGTERM to dvc alone (what `kill` and `timeout` send) ends dvc, not its stage: the stage stops by itself,
    # and a rerun at once resumes to an uninterrupted run's bytes, never a broken store recorded as good
    set_params(clone, {"clip.init_seed": 1})  # new work: nothing cached to restore
    start_and_interrupt(clone, signal.SIGTERM, "features")
    out = dvc(clone, "repro", "features")
    assert "resuming from image" in out and "starting afresh" not in out
    resumed = lock_hash(clone, "features")
    Store(clone / "data/features/backbone.zarr").read("layer4")  # every chunk there and checksummed
    dvc(clone, "repro", "--force", "features")
    assert lock_hash(clone, "features") == resumed

    # killed, then restored from the run-cache (the stage does not run): the stale partial goes with make repro
    start_and_interrupt(clone, signal.SIGKILL, "--force", "features", group=True)
    assert "is cached - skipping run" in dvc(clone, "repro", "features")
    assert (clone / "data/features/backbone.zarr.partial").exists()
    out = run([sys.executable, "-m", "depthcore.pipeline", "partials", "--remove"], clone).stdout
    assert "removed " in out and "stale, features is complete and up to date" in out
    assert not (clone / "data/features/backbone.zarr.partial").exists()

    # a local weights file is tracked by content: replacing it re-runs what used the weights (a real RN50 state
    # dict, float16: the fetch stage converts and checks it)
    weights = clone / "weights/backbone/mine.pt"
    model = create_clip_model("RN50-quickgelu")
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(state, weights)
    set_params(clone, {"clip.pretrained": "weights/backbone/mine.pt"})
    assert ran(dvc(clone, "repro", "fetch_backbone")) == {"check", "backbone", "fetch_backbone"}
    assert UP_TO_DATE in dvc(clone, "status", "fetch_backbone")
    torch.save(state | {"logit_scale": state["logit_scale"] + 1}, weights)
    assert changed(dvc(clone, "status", "fetch_backbone")) == {"fetch_backbone"}
    assert ran(dvc(clone, "repro", "fetch_backbone")) == {"fetch_backbone"}
    assert changed(dvc(clone, "status", "features", "clip_head")) >= {"features", "clip_head"}


GRID_ROWS = ["t1_lower_bound", "t1_depthclip", "t1_msa", "t4_l2_image_text", "t5_gt_segments_clip"]


def grid(*names: str, seeds=(0,)) -> set[str]:
    return {f"paper/dvc.yaml:{name}@{seed}" for name in names for seed in seeds}


@pytest.mark.slow
@pytest.mark.xdist_group("offline_run")
def test_paper_grid_runs_through_the_queue_and_each_edit_re_runs_only_what_it_can_change(offline_run, tmp_path):
    clone = offline_run.copy(tmp_path / "clone")
    # one seed: the queue still runs three (row, seed) runs two at a time (the aggregation over seeds: test_paper)
    set_params(clone, {"paper.rows": GRID_ROWS, "paper.seeds": [0], "paper.max_epochs": 1})
    run([sys.executable, "paper/grid.py", "write"], clone)
    dvc(clone, "repro")
    commit(clone, "main pipeline and the grid")
    out = run([sys.executable, "paper/grid.py", "run", "--jobs", "2"], clone).stdout
    assert "is cached - skipping run" in out  # the queue's runs, brought back from the run-cache
    summary = json.loads((clone / "metrics/paper.json").read_text())
    assert set(summary) == set(GRID_ROWS) | {"t3_l1"}
    assert summary["t3_l1"]["n"] == 1 and summary["t1_msa"]["mean"] == summary["t3_l1"]["mean"]
    assert summary["t1_lower_bound"]["n"] == 1 and summary["t1_depthclip"]["n"] == 1
    assert summary["t5_gt_segments_clip"]["n"] == 1 and summary["t5_gt_segments_clip"]["published"] is None
    assert (clone / "data/paper/variants").is_dir()  # the ground-truth segments, computed once for the grid
    assert "| MSA, CLIP no, SAM no, L1 |" in (clone / "reports/paper.md").read_text()
    commit(clone, "grid run")
    assert not changed(dvc(clone, "status"))

    trainings = {
        "train",
        *(f"paper/dvc.yaml:train-{r}@0" for r in ("t3_l1", "t4_l2_image_text", "t5_gt_segments_clip")),
    }
    evaluations = {
        "evaluate",
        *(f"paper/dvc.yaml:evaluate-{r}@0" for r in ("t3_l1", "t4_l2_image_text", "t5_gt_segments_clip")),
    }

    def stale_after(path: str, old: str, new: str) -> set[str]:
        edit(clone, path, old, new)
        stale = changed(dvc(clone, "status"))
        restore(clone)
        return stale

    # the report's table code, or a row's label: the report alone (both checks re-read rows.yaml: the main one
    # validates the paper section as make paper does)
    report = stale_after("depthcore/paper/report.py", '"Table 4: CLIP-Adapter', '"Table 4 (CLIP-Adapter)')
    assert report == {"paper/dvc.yaml:report"}
    label = stale_after("paper/rows.yaml", "label: CLIP-Adapter, image yes, text yes, L2", "label: CLIP-Adapter, L2")
    assert label == {"check", "paper/dvc.yaml:check", "paper/dvc.yaml:report"}
    # one adapter's module: that adapter's rows, and the main train_inputs (it hashes the chosen adapter's code:
    # the main adapter is msa, so its train stays up to date)
    adapter = stale_after("depthcore/models/adapters/clip_adapter.py", "LAYER = ", "LAYER: str = ")
    assert adapter == {"check", "train_inputs", "paper/dvc.yaml:check"} | grid(
        "train-t4_l2_image_text", "evaluate-t4_l2_image_text"
    )
    # one loss's module: the rows trained with it (l2)
    loss = stale_after("depthcore/losses/l2.py", '"""``loss: l2``', '"""``loss: l2`` (MSE)')
    assert loss == {"check", "train_inputs", "paper/dvc.yaml:check"} | grid("train-t4_l2_image_text")
    # the figure code or the metrics code: evaluation and reports only, no training stage
    figure = stale_after("depthcore/evaluation/figures.py", 'DEPTH_CMAP = "magma_r"', 'DEPTH_CMAP = "viridis_r"')
    assert figure & trainings == set() and {"evaluate", "zeroshot_report"} <= figure and evaluations <= figure
    metrics = stale_after("depthcore/evaluation/metrics.py", "DELTA_BASE = 1.25", "DELTA_BASE = 1.25  # Eigen's")
    assert metrics & trainings == set() and evaluations | {"paper/dvc.yaml:report"} <= metrics
    # the main pipeline's adapter: the main run only, no grid row (every trained row sets its own)
    set_params(clone, {"adapter": "clip_adapter"})
    assert changed(dvc(clone, "status")) == {"check", "train_inputs", "paper/dvc.yaml:check"}
    assert ran(dvc(clone, "repro", "paper/dvc.yaml")) == {"check", "paper/dvc.yaml:check"}
    restore(clone)

    # editing one row's params re-runs only that row's stages (and the report); the row now sets a key, which its
    # stage no longer declares from params.yaml, so the grid is regenerated first (`make paper` always does)
    table = yaml.safe_load((clone / "paper/rows.yaml").read_text())
    table["t4_l2_image_text"]["params"]["adapters.clip_adapter.ratio"] = 0.3
    (clone / "paper/rows.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
    assert "`make paper-grid`" in dvc_fails(clone, "repro", "paper/dvc.yaml")
    run([sys.executable, "paper/grid.py", "write"], clone)
    edited = grid("train-t4_l2_image_text", "evaluate-t4_l2_image_text")
    # (the main check, which reads rows.yaml too, ran in the refused repro above)
    assert ran(dvc(clone, "repro", "paper/dvc.yaml")) == {"paper/dvc.yaml:check", "paper/dvc.yaml:report"} | edited

    # a stale generated grid is refused, naming the command that regenerates it
    set_params(clone, {"paper.rows": GRID_ROWS[:2]})
    message = dvc_fails(clone, "repro", "paper/dvc.yaml")
    assert "paper/dvc.yaml is out of date with params.yaml and paper/rows.yaml" in message
    assert "`make paper-grid`" in message and len([line for line in message.splitlines() if "error:" in line]) == 1


SHARD_ROWS = ["t1_lower_bound", "t1_depthclip", "t1_msa", "t4_l2_image_text"]  # trains t3_l1 and t4_l2_image_text


@pytest.mark.slow
@pytest.mark.xdist_group("offline_run")
def test_paper_grid_in_shards_on_two_clones_collected_by_a_third_without_training(offline_run, tmp_path):
    grid_settings = {"paper.rows": SHARD_ROWS, "paper.seeds": [0], "paper.max_epochs": 1}
    remote = tmp_path / "remote"
    remote.mkdir()
    # A has run the main pipeline (a copy of the offline run); B and C are fresh clones: what they need of the main
    # pipeline they restore from the remote. The same params everywhere: one shared remote.
    a = offline_run.copy(tmp_path / "a")
    set_params(a, grid_settings)
    commit(a, "the grid's settings")
    b, c = (make_clone(tmp_path / name, OFFLINE_RUN | grid_settings) for name in ("b", "c"))
    assert (a / "params.yaml").read_text() == (b / "params.yaml").read_text()
    clones = {"a": a, "b": b, "c": c}
    grid_tool = [sys.executable, "paper/grid.py"]
    # no remote, or a bad SHARD: refused at once in one line naming the fix
    message = fails([*grid_tool, "run", "--shard", "1/2"], a)
    assert (
        message.startswith("error: `make paper SHARD=1/2` needs a default DVC remote")
        and len(message.splitlines()) == 1
    )
    assert "`dvc remote add -d storage /path/or/url`" in message
    assert "expected k/N" in fails([*grid_tool, "run", "--shard", "0/2"], a)
    for clone in clones.values():  # the same commit everywhere: one shared remote
        dvc(clone, "remote", "add", "-d", "storage", str(remote))
        run(["git", "commit", "-qam", "remote"], clone)

    out_a = run([*grid_tool, "run", "--shard", "1/2"], a).stdout  # the main pipeline, the cheap stages, t3_l1
    assert "shard 1/2: 1 runs: t3_l1@0" in out_a
    assert {"paper/dvc.yaml:train-t3_l1@0", "paper/dvc.yaml:lower_bound@0"} <= ran(out_a)
    assert not any("t4_l2_image_text" in s for s in ran(out_a))

    # before shard 2 pushed, the collector refuses naming the missing run and its shard, and trains nothing
    refused = fails([*grid_tool, "collect", "--shards", "2"], c)
    assert "error: `make paper-collect` computes nothing: 'train t4_l2_image_text 0' is not on the remote" in refused
    assert not (c / "models/paper/t4_l2_image_text/seed0.safetensors").exists() and "epoch 1" not in refused
    assert not {"prepare", "features", "paper/dvc.yaml:train-t3_l1@0"} & ran(refused)  # restored from A's
    assert "error: the remote lacks 1 of 2 runs, nothing was trained: t4_l2_image_text@0 (`make paper SHARD=2/2`)" in (
        refused
    )
    assert not (c / "metrics/paper.json").exists()

    out_b = run([*grid_tool, "run", "--shard", "2/2"], b).stdout  # restores the main pipeline from the remote
    assert ran(out_b) & {"paper/dvc.yaml:train-t4_l2_image_text@0", "paper/dvc.yaml:evaluate-t4_l2_image_text@0"}
    assert "prepare" not in ran(out_b) and "features" not in ran(out_b)
    assert not any("t3_l1" in s or "lower_bound" in s for s in ran(out_b))

    out_c = run([*grid_tool, "collect", "--shards", "2"], c).stdout
    grid_ran = {s for s in ran(out_c) if s.startswith("paper/dvc.yaml:")}
    assert "paper/dvc.yaml:report" in grid_ran <= {"paper/dvc.yaml:check", "paper/dvc.yaml:report"}, grid_ran
    assert "Stage 'paper/dvc.yaml:train-t4_l2_image_text@0' is cached - skipping run" in out_c
    summary = json.loads((c / "metrics/paper.json").read_text())
    assert set(summary) == set(SHARD_ROWS) | {"t3_l1"}
    assert summary["t3_l1"]["n"] == 1 and summary["t4_l2_image_text"]["n"] == 1
    assert (c / "reports/paper.md").stat().st_size > 0 and (c / "plots/paper.png").stat().st_size > 0
    for row in ("t3_l1", "t4_l2_image_text"):  # the numbers are the shards' own
        src = a if row == "t3_l1" else b
        assert (c / f"metrics/paper/{row}/seed0.json").read_text() == (
            src / f"metrics/paper/{row}/seed0.json"
        ).read_text()


BACKBONE_STAGES = {"check", "backbone", "fetch_backbone", "features", "clip_head", "zeroshot", "zeroshot_report"}
SMALL_PROBE = {"adapters.dpt_probe.features": 16}  # the published fusion width (512) is minutes a step on a CPU
TABLE6_ROWS = ["t6_clip_rn50_linear", "f6_dinov2_vits14_lin1"]  # the low-data protocol's and the field's


@pytest.mark.slow
@pytest.mark.xdist_group("standalone")
def test_a_backbone_is_computed_once_switching_back_restores_it_and_a_table6_grid_reuses_it(offline_run, tmp_path):
    clone = offline_run.copy(tmp_path / "clone")
    set_params(clone, SMALL_PROBE)
    # the probe's settings change nothing the main run reads: train_inputs (which reads every adapter's section)
    # re-runs, its output unchanged, so no training does
    assert ran(dvc(clone, "repro")) == {"check", "train_inputs"}
    commit(clone, "main pipeline on clip_rn50")
    # another backbone's settings re-run the small backbone stage alone (its output does not change)
    set_params(clone, {"backbones.sam_vitb.layers": ["block12"], "backbones.clip_vitb16.init_seed": 3})
    assert ran(dvc(clone, "repro")) == {"check", "backbone"}
    restore(clone)
    dvc(clone, "repro")

    # an experiment on DINOv2 with the DPT probe: only that backbone's features (and its empty zero-shot), then
    # the training; no other stage
    out = dvc(clone, "exp", "run", "-S", "backbone=dinov2_vits14", "-S", "adapter=dpt_probe")
    assert ran(out) == BACKBONE_STAGES | RUN_STAGES
    features = Store(clone / "data/features/backbone.zarr").attrs
    assert features["backbone"] == "dinov2_vits14" and set(features["layers"]) == {
        "block3",
        "block6",
        "block9",
        "block12",
    }
    assert set(json.loads((clone / "metrics/zeroshot.json").read_text())) == {"constant_mean"}  # no text tower
    evaluation = json.loads((clone / "metrics/eval.json").read_text())
    assert evaluation["n_images"] == 2 and 0 < evaluation["abs_rel"] < 10

    # switching back recomputes no feature and trains nothing: DVC's run-cache restores every stage but the weights
    # folder (kept while it runs, for resuming downloads; for random weights a manifest) and evaluate, whose
    # per-image CSV is uncached (it predicts the 2 test images again)
    restore(clone)
    out = dvc(clone, "repro")
    assert ran(out) <= {"check", "fetch_backbone", "evaluate"} and "Stage 'features' is cached - skipping run" in out
    assert Store(clone / "data/features/backbone.zarr").attrs["backbone"] == "clip_rn50"
    assert UP_TO_DATE in dvc(clone, "status", "dvc.yaml")

    # a two-row Table 6 grid: the RN50 linear probe reads the main features; the field row (offline: the rendered
    # rooms are paper.field_source, so no data variant) trains DINOv2's lin. 1 head with DINOv2's recipe on live
    # features of its own backbone variant, whose features stage caches nothing
    set_params(clone, {"paper.rows": TABLE6_ROWS, "paper.seeds": [0], "paper.max_epochs": 1})
    run([sys.executable, "paper/grid.py", "write"], clone)
    stages = yaml.safe_load((clone / "paper/dvc.yaml").read_text())["stages"]
    assert [s.split("-")[1] for s in stages if s.startswith("variant-")][:2] == ["backbone", "fetch_backbone"]
    assert not any(s.startswith(("variant-fetch_data", "variant-prepare", "variant-split")) for s in stages)
    out = run([sys.executable, "paper/grid.py", "run"], clone).stdout
    assert "features" not in ran(out)  # the main features were reused
    summary = json.loads((clone / "metrics/paper.json").read_text())
    assert set(summary) == set(TABLE6_ROWS) and all(summary[r]["n"] == 1 for r in TABLE6_ROWS)
    field = json.loads((clone / "data/paper/f6_dinov2_vits14_lin1/seed0/train.json").read_text())
    assert field["recipe"] == "dinov2" and field["recipe_iterations"] == 38_400
    report = (clone / "reports/paper.md").read_text()
    assert "### Table 6 (depthcore)" in report and "### Table 6 on the field's protocol" in report
    assert "DINOv2 ViT-S/14, DINOv2 linear head, lin. 1" in report.split("field's protocol")[1]
    assert (clone / "plots/paper_backbones.png").read_bytes()[:4] == b"\x89PNG"
