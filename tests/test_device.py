"""Choosing the device: the reasons a GPU cannot be used, worked out from the facts by hand; refusal before any
work; the one logged line; loader workers; one GPU per queue worker, waiting when every GPU is taken."""

import os
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from depthcore.device import (
    MAX_AUTO_WORKERS,
    CudaFacts,
    DeviceError,
    _driver_version,
    cuda_problem,
    describe_device,
    loader_workers,
    select_device,
)

REPO = Path(__file__).resolve().parents[1]
USABLE = CudaFacts(build_cuda="13.0", visible=None, driver=(580, 95, 5), available=True)


def facts(**changes) -> CudaFacts:
    return CudaFacts(**({"build_cuda": "13.0", "visible": None, "driver": (580, 95, 5), "available": False} | changes))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (facts(build_cuda=None), "CPU-only build"),
        (facts(visible=""), "CUDA_VISIBLE_DEVICES='' hides every GPU"),
        (facts(visible="-1"), "hides every GPU"),
        (facts(driver=None), "no NVIDIA driver is loaded"),
        # CUDA 13 needs 580.65.06: 575.57.08 is too old, 470 too, and the message names the cu118 build
        (facts(driver=(575, 57, 8)), "the NVIDIA driver 575.57.08 is too old for torch"),
        (facts(build_cuda="12.8", driver=(470, 57, 2)), "(needs 525.60.13 or newer)"),
        (facts(init_warning="CUDA initialization: unknown error\nmore"), "found no usable GPU with driver 580.95.05"),
    ],
)
def test_each_reason_a_gpu_cannot_be_used_is_named_with_its_fix(case, expected):
    problem = cuda_problem(case)
    assert expected in problem and "\n" not in problem
    assert "runtime.device: cpu" in problem or "update the driver" in problem or "unset it" in problem


def test_a_new_enough_driver_is_not_called_too_old():
    assert "too old" not in cuda_problem(facts(driver=(580, 65, 6)))  # exactly the minimum
    assert cuda_problem(USABLE) is None


def test_driver_version_is_read_from_the_kernel_module_file(tmp_path):
    (tmp_path / "version").write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    )
    assert _driver_version(tmp_path / "version") == (535, 104, 5)
    assert _driver_version(tmp_path / "missing") is None


def test_cuda_that_cannot_be_used_is_refused_and_auto_falls_back_to_the_cpu():
    old = facts(driver=(470, 57, 2))
    with pytest.raises(DeviceError, match="runtime.device cuda: the GPU cannot be used: the NVIDIA driver 470.57.02"):
        select_device("cuda", old)
    assert select_device("auto", old) == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="expected one of"):
        select_device("gpu")
    line = describe_device(torch.device("cpu"), old)
    assert f"torch {torch.__version__}" in line and "threads" in line
    assert "an NVIDIA driver is loaded but not used: the NVIDIA driver 470.57.02 is too old" in line
    assert "not used" not in describe_device(torch.device("cpu"), facts(driver=None))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a usable GPU")
def test_this_machine_refuses_cuda_saying_why():
    with pytest.raises(DeviceError, match="the GPU cannot be used: "):
        select_device("cuda")


def test_loader_workers_follow_the_cpu_count():
    cpus = len(os.sched_getaffinity(0))
    assert loader_workers("auto") == max(0, min(MAX_AUTO_WORKERS, cpus - 1))
    assert loader_workers(3) == 3 and loader_workers(0) == 0


@pytest.fixture
def common(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "stages"))
    import common

    yield common
    for handle in common._HELD:
        handle.close()
    common._HELD.clear()


def test_a_stage_asked_for_cuda_fails_before_any_work_with_one_line(common, tmp_path):
    import subprocess

    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("device: auto ", "device: cuda "))
    script = (
        f"import sys; sys.path.insert(0, {str(REPO / 'stages')!r}); import common\n"
        "from depthcore.config.params import load_params\n"
        "def main(stage):\n"
        "    stage.device\n"
        "    print('worked')\n"
        f"common.run(main, lambda: common.Stage(params=load_params({str(params)!r})))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_STAGE", "DVC_EXP_NAME")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    if torch.cuda.is_available():
        pytest.skip("this machine has a usable GPU")
    assert result.returncode == 1 and "worked" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: runtime.device cuda: the GPU cannot be used: ")


def test_queue_workers_take_one_gpu_each_and_wait_when_all_are_taken(common, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert common.gpus_to_share() == []  # not an experiment: a stage uses what it is given
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")
    assert common.gpus_to_share() == ["0", "1"]
    locks = tmp_path / "locks"
    # flock conflicts between open files, also of one process: each call stands for another queue worker
    assert common.take_one_gpu(["0", "1"], locks) == "0" and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert common.take_one_gpu(["0", "1"], locks) == "1"
    threading.Timer(0.3, common._HELD[0].close).start()  # the worker on GPU 0 ends
    started = time.monotonic()
    assert common.take_one_gpu(["0", "1"], locks, poll_s=0.05) == "0"
    assert time.monotonic() - started >= 0.25
    said = capsys.readouterr().out
    assert said.count("all 2 GPUs (0,1) are in use by other queue workers: waiting for one") == 1
    assert "--jobs 2 or fewer" in said
