"""Integrity: runtime settings never change an output's bytes; a stage dies with its dvc; weights and
artifacts are verified where they are loaded; unfinished work is never thrown away, stale leftovers are
removed; bad input is refused in one line that names the fix."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_TRAINING, make_params
from test_store import flip_byte
from torch.utils.data import DataLoader

from depthcore.artifacts import ArtifactError, head_identity, load_head
from depthcore.config.params import load_params
from depthcore.data.batch import store_paths
from depthcore.data.samples import TrainingDataset
from depthcore.data.store import Store
from depthcore.errors import ConfigError, DepthcoreError
from depthcore.evaluation.evaluate import predict_to_store
from depthcore.features.backbone import extract_features
from depthcore.features.zeroshot import predict_zeroshot
from depthcore.io import CorruptFileError, WriterLock, read_safetensors, sha256_of, write_safetensors_atomic
from depthcore.models.adapters.registry import build_adapter
from depthcore.paper.grid import grid_dvc_yaml
from depthcore.paper.rows import load_rows
from depthcore.pipeline.partials import remove_stale, unfinished_work
from depthcore.seeding import seed_global
from depthcore.training.loop import TrainingError
from depthcore.training.run import build_run, train_model
from depthcore.weights.clip import load_clip_backbone
from depthcore.weights.convert import state_dict_of
from depthcore.weights.manifest import MANIFEST, WeightsError, read_manifest, weights_file
from depthcore.weights.sam import load_sam_checkpoint

BATCH_SIZES = (1, 3, 4)


def tree_digest(root) -> str:
    """SHA-256 over a store's files (relative names and bytes): what DVC's hash of the output sees."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_batch_sizes_do_not_change_any_stored_byte(pipeline, tmp_path):
    """runtime.features_batch_size and runtime.eval_batch_size group the work, never the arithmetic: CLIP features,
    zero-shot depth and an adapter's predictions are byte-identical over batch sizes 1, 3 and 4."""
    backbone = load_clip_backbone(pipeline.backbone_weights)
    weights = read_manifest(pipeline.backbone_weights, stage="fetch_backbone")
    layers = tuple(Store(pipeline.features).attrs["layers"])
    params = make_params(TINY_TRAINING)  # untrained here: only the model's widths matter
    run = build_run(params, pipeline)
    seed_global(0, "init", 0)
    model = build_adapter(params.adapter, cfg=params.adapter_config, context=run.context).eval()
    n = Store(pipeline.dataset).shape("rgb")[0]
    images = TrainingDataset(
        stores=store_paths(pipeline), indices=np.arange(n), keys=model.batch_keys(), with_flipped=True
    )
    assert make_params().runtime.features_batch_size == make_params().runtime.eval_batch_size == BATCH_SIZES[-1]
    # the shared pipeline's stores were written at the default batch size: the last of BATCH_SIZES
    digests = {"clip": {tree_digest(pipeline.features)}, "zeroshot": {tree_digest(pipeline.zeroshot)}}
    digests["predictions"] = set()
    for b in BATCH_SIZES:
        if b == BATCH_SIZES[-1]:
            clip, zeroshot = pipeline.features, pipeline.zeroshot
        else:
            clip = extract_features(
                pipeline.dataset,
                tmp_path / f"clip{b}.zarr",
                backbone=backbone,
                weights=weights,
                layers=layers,
                key=None,
                batch_size=b,
                progress=False,
            )
            zeroshot = predict_zeroshot(
                clip,
                tmp_path / f"zs{b}.zarr",
                head=load_head(pipeline.clip_head),
                head_id=head_identity(pipeline.clip_head),
                key=None,
                batch_size=b,
                progress=False,
            )
        predictions = predict_to_store(
            model,
            DataLoader(images, batch_size=b),
            tmp_path / f"pred{b}.zarr",
            n_images=n,
            attrs={},
            progress=False,
        )
        for name, path in (("clip", clip), ("zeroshot", zeroshot), ("predictions", predictions)):
            digests[name].add(tree_digest(path))
    assert {name: len(found) for name, found in digests.items()} == {"clip": 1, "zeroshot": 1, "predictions": 1}


def test_a_stage_ends_when_its_dvc_process_is_gone(tmp_path):
    """SIGTERM to dvc ends dvc but not the stage it started: the stage notices and stops within a second, so no
    orphan keeps writing beside the rerun (benchmarks/orphan.py measures it with a real dvc)."""
    stage = tmp_path / "stage.py"
    stage.write_text(
        f"import sys, time; sys.path.insert(0, {str(REPO / 'stages')!r})\n"
        "import common; common.watch_dvc(); print('started', flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen(  # stands for dvc: runs the stage through a shell, as DVC does, then is killed
        [
            sys.executable,
            "-c",
            f"import subprocess, time; subprocess.Popen(['bash', '-c', {f'{sys.executable} {stage}; true'!r}]); "
            "time.sleep(60)",
        ],
        env={**os.environ, "DVC_STAGE": "features"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout.readline().strip() == "started"
    stage_pids = [p for p in _children(parent.pid)]
    parent.send_signal(signal.SIGTERM)
    parent.wait()
    start = time.monotonic()
    while time.monotonic() < start + 5 and any(_alive(p) for p in stage_pids):
        time.sleep(0.02)
    assert stage_pids and not any(_alive(p) for p in stage_pids)
    assert time.monotonic() - start < 2  # benchmarks/orphan.py: at most 0.39 s (a 0.25 s poll), here under load
    assert "has exited, so this stage stops too" in parent.stderr.read()


def test_a_stage_whose_dvc_died_while_it_started_stops_at_once(tmp_path):
    """dvc killed while its stage is still starting (a stage's imports take seconds): the stage was handed to
    init before it could look for dvc, and it stops when stages/common.py is imported instead of running on."""
    stage, pid_file, log = tmp_path / "stage.py", tmp_path / "pid", tmp_path / "stage.log"
    stage.write_text(
        "import os, sys, time\n"
        "while os.getppid() == int(sys.argv[1]): time.sleep(0.01)  # until dvc (its parent) is gone\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{os.getppid()}}')\n"
        f"sys.path.insert(0, {str(REPO / 'stages')!r})\n"
        "import common\n"
        "print('ran on', flush=True); time.sleep(60)\n"
    )
    dvc = f"import os, subprocess, sys; subprocess.Popen([sys.executable, {str(stage)!r}, str(os.getpid())])"
    with open(log, "w") as out:  # stands for dvc: starts the stage (no shell: DVC execs a lone command) and exits
        subprocess.run(
            [sys.executable, "-c", dvc],
            env={**os.environ, "DVC_STAGE": "features"},
            stdout=out,
            stderr=out,
            check=True,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not pid_file.exists():
        time.sleep(0.02)
    pid, new_parent = map(int, pid_file.read_text().split())
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    if new_parent != 1:
        pytest.skip(f"orphans go to process {new_parent} here (a subreaper), not to init")
    assert "dvc has exited before this stage started, so it stops too" in log.read_text()
    assert "ran on" not in log.read_text()


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2 :].split()[1]) == parent:
                found.append(int(stat.parent.name))
                frontier.append(found[-1])
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_a_flipped_weights_byte_fails_the_load_naming_the_fix(pipeline, tmp_path):
    folder = tmp_path / "clip"
    shutil.copytree(pipeline.backbone_weights, folder)
    weights = tmp_path / "w.safetensors"
    write_safetensors_atomic(weights, {"w": torch.arange(64, dtype=torch.float32)}, None)
    manifest = {"model": "RN50", "pretrained": "weights/backbone/w.safetensors", "file": "w.safetensors"}
    shutil.copy(weights, folder / "w.safetensors")
    (folder / MANIFEST).write_text(json.dumps(manifest | {"sha256": sha256_of(weights)}))
    assert (
        weights_file(folder, read_manifest(folder, stage="fetch_backbone"), stage="fetch_backbone")
        == folder / "w.safetensors"
    )
    flip_byte(folder / "w.safetensors", -3)
    with pytest.raises(WeightsError, match=r"are corrupt: their SHA-256 is not .*python -m depthcore.pipeline repair"):
        weights_file(folder, read_manifest(folder, stage="fetch_backbone"), stage="fetch_backbone")
    # artifacts and checkpoints carry the SHA-256 of their tensors: a flip there fails the read too
    flip_byte(weights, -3)
    with pytest.raises(CorruptFileError, match=r"w.safetensors is corrupt .*python -m depthcore.pipeline repair"):
        read_safetensors(weights)
    head = tmp_path / "head.safetensors"
    shutil.copy(pipeline.clip_head, head)
    flip_byte(head, -2)
    with pytest.raises(ArtifactError, match="corrupt"):
        load_head(head)


def test_a_pickle_with_code_is_refused_in_depthcore_words(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "hook": _Hook()}, path)
    for load in (
        lambda: state_dict_of("clip_rn50", path),
        lambda: load_sam_checkpoint(torch.nn.Linear(1, 1), path, model_name="vit_b"),
    ):
        with pytest.raises(DepthcoreError) as error:
            load()
        message = str(error.value)
        assert "needs code to load" in message and "_Hook" in message and "never unpickles code" in message
        assert "weights_only=False" not in message and "\n" not in message


class _Hook:
    """A class the pickle needs: code torch's weights_only loader refuses."""


def test_a_hand_run_training_keeps_the_state_of_an_interrupted_one(pipeline, tmp_path):
    params = make_params(TINY_TRAINING)
    paths = dataclasses.replace(
        pipeline, model=tmp_path / "m.safetensors", train_metrics=tmp_path / "m.json", train_curves=tmp_path / "m.csv"
    )

    def stop(epoch, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(params, paths, resume_key="k", progress=False, on_epoch_end=stop)
    state = paths.resume_state.read_bytes()
    with pytest.raises(TrainingError, match=r"m.resume.pt holds an interrupted training \(after epoch 1\), kept"):
        train_model(params, paths, resume_key=None, progress=False)
    assert paths.resume_state.read_bytes() == state and not paths.model.exists()


def test_empty_params_are_one_line_naming_the_fix(tmp_path):
    (tmp_path / "params.yaml").write_text("")
    with pytest.raises(ConfigError, match=r"params.yaml is empty: restore the repository's copy with `git checkout"):
        load_params(tmp_path / "params.yaml")
    grid = grid_dvc_yaml(load_params(REPO / "params.yaml"), load_rows())
    assert "vars:" not in grid and "${paper" not in grid  # DVC parses the grid without params.yaml's values
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace("  rows: null", "  rows: [no_such_row]"))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.argv = ['grid', 'write']; sys.path.insert(0, {str(REPO / 'paper')!r}); "
            f"import grid; grid.PARAMS_FILE = {str(bad)!r}; grid.main()",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: params 'paper.rows': unknown row(s) ['no_such_row']; valid rows are")


def test_stale_leftovers_are_removed_and_live_ones_kept(tmp_path):
    """After DVC restores an output (here: it is up to date) the leftover of a killed run is stale and removed;
    a leftover of a stage that is not up to date is kept and reported; one a process is writing is not touched."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["DVC_NO_ANALYTICS"] = "1"
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True)
    (tmp_path / "in.txt").write_text("1")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  a:\n    cmd: mkdir -p a.zarr && cp in.txt a.zarr/x\n    deps: [in.txt]\n    outs: [a.zarr]\n"
        "  b:\n    cmd: cp in.txt b.pt\n    deps: [in.txt]\n    outs: [b.pt]\n"
    )
    subprocess.run(["dvc", "repro", "-q"], cwd=tmp_path, env=env, check=True)
    (tmp_path / "a.zarr.partial").mkdir()
    (tmp_path / "a.zarr.partial" / "chunk").write_bytes(b"x" * 1000)
    (tmp_path / "b.resume.pt").write_bytes(b"y" * 10)
    found = {item.path.name: item for item in unfinished_work(tmp_path)}
    assert set(found) == {"a.zarr.partial", "b.resume.pt"} and found["a.zarr.partial"].size == 1000
    assert all(item.stale for item in found.values()) and "stale, a is complete" in found["a.zarr.partial"].describe()

    lock = WriterLock(tmp_path / "b.resume.pt")  # being written: neither listed nor removed
    removed = remove_stale(unfinished_work(tmp_path))
    assert [item.path.name for item in removed] == ["a.zarr.partial"]
    assert not (tmp_path / "a.zarr.partial").exists() and (tmp_path / "b.resume.pt").exists()
    lock.release()

    (tmp_path / "in.txt").write_text("2")  # b is no longer up to date: its leftover is work to resume
    (only,) = unfinished_work(tmp_path)
    assert not only.stale and remove_stale([only]) == [] and (tmp_path / "b.resume.pt").exists()
    assert f"kept for `dvc repro` to resume (remove it with `rm -rf {tmp_path / 'b.resume.pt'}`)" in only.describe()


def test_safetensors_bytes_are_the_same_in_every_process(tmp_path):
    """The metadata (depthcore's JSON and the tensors' checksum) is one entry: safetensors writes several in a
    random order per process, which would give a checkpoint new bytes, so a new DVC hash, on every run."""
    script = (
        "import sys, torch; from depthcore.io import write_safetensors_atomic; "
        "write_safetensors_atomic(sys.argv[1], {'w': torch.arange(4.0)}, {'adapter': 'msa', 'epochs': 2})"
    )
    outputs = [tmp_path / f"{i}.safetensors" for i in range(4)]
    for out in outputs:
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, cwd=REPO)
    assert len({out.read_bytes() for out in outputs}) == 1
    assert read_safetensors(outputs[0])[0] == {"adapter": "msa", "epochs": 2}
