"""End-to-end: the DVC pipeline offline in a temporary clone of this repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "depthcore test",
    "GIT_AUTHOR_EMAIL": "test@depthcore.invalid",
    "GIT_COMMITTER_NAME": "depthcore test",
    "GIT_COMMITTER_EMAIL": "test@depthcore.invalid",
}


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1", **GIT_IDENTITY}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def make_clone(dest: Path, overrides: dict) -> Path:
    """Copy the tracked and untracked-but-not-ignored files (what a clone of the submitted tree holds),
    commit them in a fresh git repo, and apply the params overrides (dotted keys)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for dotted, value in overrides.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "clone"]):
        _run(cmd, dest)
    return dest


def dvc(clone: Path, *args: str) -> str:
    return _run([str(BIN / "dvc"), *args], clone).stdout


def test_stage_reports_bad_params_in_one_line_and_exits_non_zero(tmp_path):
    (tmp_path / "params.yaml").write_text("data:\n  source: kitti\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages/fetch_data.py")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: params 'data.source': unknown value 'kitti'")
    assert "Traceback" not in proc.stderr and not (tmp_path / "data").exists()


@pytest.mark.slow
def test_fetch_data_and_prepare_offline(tmp_path):
    clone = make_clone(
        tmp_path, {"data.source": "synthetic", "data.synthetic.images": 4, "data.synthetic.views_per_room": 2}
    )
    dvc(clone, "repro", "prepare")
    store = clone / "data/prepared/dataset.zarr"
    attrs = json.loads((store / "zarr.json").read_text())["attributes"]
    assert attrs["source"] == "synthetic" and attrs["n_images"] == 4
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    assert lock["stages"]["prepare"]["params"]["params.yaml"]["data.source"] == "synthetic"
    assert "Data and pipelines are up to date" in dvc(clone, "status", "prepare")
    # a param that prepare does not declare leaves it cached; one that it does makes it stale
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["eval"]["max_depth"] = 9.0
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "Data and pipelines are up to date" in dvc(clone, "status", "prepare")
    params["data"]["split_seed"] = 1
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "data.split_seed" in dvc(clone, "status", "prepare")
    assert "Running stage 'prepare'" in dvc(clone, "repro", "prepare")
    assert "Running stage 'fetch_data'" not in dvc(clone, "repro", "prepare")


OFFLINE = {
    "data.source": "synthetic",
    "data.synthetic.images": 6,  # 3 rooms: one each for train, val and test
    "data.synthetic.views_per_room": 2,
    "clip.pretrained": "none",
    "clip.batch_size": 2,
    "sam.pretrained": "none",
    "segments.method": "felzenszwalb",  # SAM itself is covered by tests/test_segments_sam.py
    "train.epochs": 2,
    "train.batch_size": 2,
    "train.lr": 0.003,
    "adapters.msa.decoder_channels": 64,
    "adapters.msa.rgb_channels": 8,
}
FEATURE_STAGES = ("fetch_data", "prepare", "fetch_weights", "clip_features", "segments", "zeroshot")


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.mark.slow
def test_full_offline_repro_then_experiment_reruns_only_train_and_evaluate(tmp_path):
    clone = make_clone(tmp_path, OFFLINE)
    out = dvc(clone, "repro")
    assert _ran(out) == {*FEATURE_STAGES, "train", "evaluate"}
    for name in ("zeroshot", "segments", "train", "eval"):
        metrics = json.loads((clone / f"metrics/{name}.json").read_text())
        assert metrics, name
    evaluation = json.loads((clone / "metrics/eval.json").read_text())
    assert evaluation["n_images"] == 2 and 0 < evaluation["abs_rel"] < 10
    for name in ("plots/zeroshot.png", "plots/eval.png", "plots/train_curves.csv", "models/model.pt"):
        assert (clone / name).stat().st_size > 0, name
    _run(["git", "add", "-A"], clone)
    _run(["git", "commit", "-qm", "baseline run"], clone)

    out = dvc(clone, "exp", "run", "-S", "adapter=clip_adapter")
    assert _ran(out) == {"train", "evaluate"}
    assert json.loads((clone / "metrics/eval.json").read_text())["model"]["adapter"] == "clip_adapter"
    diff = dvc(clone, "metrics", "diff")
    assert "metrics/eval.json" in diff and "abs_rel" in diff
