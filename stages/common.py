"""What every stage script shares: the whole params.yaml validated before any work, the stage's input
identity (for resuming interrupted work), depthcore's user errors as one line and exit status 1, and, under
DVC, an end when the dvc process that started the stage is gone (killed by SIGTERM or SIGHUP, dvc does not
stop its stage; an orphan writing on would race the rerun).

Stage scripts import this module first; it puts the checkout's own root first on ``sys.path``, so a
stage always runs the ``depthcore`` next to it (the code DVC hashed), also in DVC's experiment copies.

The paper grid (paper/dvc.yaml) runs the same ``main`` functions through paper/stage.py, with a row's
params and paths. A stage that computes asks for :attr:`Stage.device` before any work: ``runtime.device``
resolved (a requested GPU that cannot be used is refused with the reason) and logged once. In a DVC experiment
(the queue runs several at once) that stage process first takes one free GPU for itself, waiting while every
GPU is taken."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHELLS = {"sh", "bash", "dash", "zsh", "fish", "ksh"}  # what DVC may run a stage's command through
WATCH_S = 0.25  # how often a stage checks that its dvc process is alive (it stops within ~0.3 s of dvc)
GPU_LOCKS = ".dvc/tmp/gpu-locks"  # under the main repository (DVC_ROOT), shared by the queue's workers
_HELD: list = []  # the open lock file of this process's GPU
_WATCHING: list[threading.Thread] = []  # the thread watching dvc (one per process)


def gpus_to_share() -> list[str]:
    """The GPUs a DVC experiment's stages share (``CUDA_VISIBLE_DEVICES``, else every GPU the NVIDIA driver
    lists); none outside an experiment (``DVC_EXP_NAME`` unset), where a stage uses what it is given."""
    if "DVC_EXP_NAME" not in os.environ:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    listed = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(listed.iterdir())))] if listed.is_dir() else []


def take_one_gpu(devices: list[str], locks: Path, *, poll_s: float = 1.0) -> str | None:
    """Narrow CUDA_VISIBLE_DEVICES to one of ``devices`` that this process holds a lock on (released when it
    exits), so parallel queue workers use one GPU each. With every GPU held by other workers (more queue jobs
    than GPUs) it says so and waits for one, instead of sharing. Runs before torch starts CUDA."""
    import fcntl

    if not devices:
        return None
    locks.mkdir(parents=True, exist_ok=True)
    said = False
    while True:
        for device in devices:
            handle = open(locks / f"gpu{device}.lock", "w")  # noqa: SIM115  (held open for the process lifetime)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            _HELD.append(handle)
            os.environ["CUDA_VISIBLE_DEVICES"] = device
            return device
        if not said:
            print(
                f"all {len(devices)} GPUs ({','.join(devices)}) are in use by other queue workers: waiting for one "
                f"(more queue jobs than GPUs run one after another; use --jobs {len(devices)} or fewer)",
                flush=True,
            )
            said = True
        time.sleep(poll_s)


def _process(pid: int) -> tuple[str, str, int, str] | None:
    """(command name, state, parent pid, start time) of a live process from /proc, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return text[text.index("(") + 1 : text.rindex(")")], fields[0], int(fields[1]), fields[19]


def _stop(message: str) -> None:
    print(f"error: {message}; what it finished is kept: rerun `dvc repro` to resume", file=sys.stderr, flush=True)
    os._exit(1)


def _dvc_is_init() -> bool:
    """Whether process 1 is dvc itself (a container started as ``dvc repro``): then a stage's parent is 1."""
    try:
        return b"dvc" in Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return False


def watch_dvc() -> None:
    """Under DVC (``DVC_STAGE`` set; Linux's /proc), end this process with a one-line error within
    :data:`WATCH_S` of the dvc process that ran it (the first ancestor that is not a shell) exiting, and at once
    when it is already gone (this process was handed to init before it looked). What was finished is kept, as
    after any kill, and a rerun resumes it. Called when this module is imported, before a stage's own imports
    (a second or two of torch), so the watch covers them too; later calls do nothing."""
    if _WATCHING or "DVC_STAGE" not in os.environ or not Path("/proc/self/stat").exists():
        return
    chain, pid = [], os.getppid()
    while pid > 1 and (info := _process(pid)) is not None:
        chain.append((pid, info[3]))
        if info[0] not in SHELLS:
            break
        pid = info[2]
    else:  # no ancestor but shells before init: dvc has exited already
        if not _dvc_is_init():
            _stop("dvc has exited before this stage started, so it stops too (no orphan writes on)")
        return

    def gone() -> bool:
        return any((info := _process(p)) is None or info[1] == "Z" or info[3] != start for p, start in chain)

    def watch() -> None:
        while not gone():
            time.sleep(WATCH_S)
        _stop(f"dvc (pid {chain[-1][0]}) has exited, so this stage stops too (no orphan writes on)")

    _WATCHING.append(threading.Thread(target=watch, name="watch-dvc", daemon=True))
    _WATCHING[0].start()


watch_dvc()  # before the imports below and the stage script's own: they take seconds with torch

from depthcore.config.params import Params, load_params  # noqa: E402
from depthcore.config.paths import PARAMS_FILE, Paths  # noqa: E402
from depthcore.errors import DepthcoreError  # noqa: E402
from depthcore.pipeline.dvc import dependency_hashes  # noqa: E402


@dataclass
class Stage:
    """The validated params, the artifact paths, and the input identity of the running stage."""

    params: Params
    paths: Paths = field(default_factory=Paths)

    @cached_property
    def key(self) -> str | None:
        """SHA-256 of the stage's DVC input hashes: interrupted work is resumed only for the same key."""
        hashes = dependency_hashes()
        if hashes is None:
            print("not run by DVC: interrupted work of this stage will not be resumed")
            return None
        return hashlib.sha256(json.dumps(hashes, sort_keys=True, default=str).encode()).hexdigest()

    @cached_property
    def device(self):
        """The torch device ``runtime.device`` names (one free GPU of an experiment's), printed once."""
        from depthcore.device import describe_device, select_device

        if self.params.runtime.device != "cpu":
            take_one_gpu(gpus_to_share(), Path(os.environ.get("DVC_ROOT", ".")) / GPU_LOCKS)
        device = select_device(self.params.runtime.device)
        print(describe_device(device), flush=True)
        return device


def run(main: Callable[[Stage], None], make_stage: Callable[[], Stage] | None = None) -> None:
    """Validate params.yaml (``make_stage``: how to build the stage, default the main pipeline's), then call
    ``main(stage)``; print depthcore's user errors as one line and exit 1."""
    watch_dvc()
    try:
        main(make_stage() if make_stage is not None else Stage(params=load_params(PARAMS_FILE)))
    except DepthcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
