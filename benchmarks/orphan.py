"""Benchmark of the orphan watch (stages/common.py): how long a stage runs on after its dvc process is killed.

A scratch DVC repository (git + dvc init) holds one stage whose script is shaped like the project's: it imports
``common`` first, then ``depthcore.features.backbone`` (torch: seconds of imports), then works. ``dvc repro`` runs
it; dvc is sent SIGTERM (which ends dvc, not the stage it started) at several delays after the stage process
started, during its imports and while it works (sleeping, or holding the CPU with torch), and the time from the
signal to the stage's exit is measured.
Usage: python benchmarks/orphan.py [--repeats 3]
Writes benchmarks/results/orphan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "orphan.json"
BIN = Path(sys.executable).parent
DELAYS_S = (0.0, 0.5, 1.0, 2.0, 4.0)  # after the stage process started; its imports take ~2-3 s on 2 cores
WORK = {"sleep": "time.sleep(120)", "torch": "x = torch.rand(1500, 1500)\nwhile True: x @ x"}
GIVE_UP_S = 30.0  # a stage still running this long after dvc died counts as an orphan that never stops

STAGE = """import os, sys
open("pid", "w").write(str(os.getpid()))
sys.path.insert(0, {stages!r})
from common import run
from depthcore.features.backbone import cache_features
import time, torch
def main(stage):
{work}
run(main, lambda: None)
"""


def _state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2]


def once(folder: Path, work: str, delay: float) -> float:
    """Seconds from SIGTERM to dvc until its stage has exited (GIVE_UP_S when it did not)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=folder, check=True, env=env)
    body = "\n".join("    " + line for line in WORK[work].splitlines())
    (folder / "stage.py").write_text(STAGE.format(stages=str(REPO / "stages"), work=body))
    (folder / "dvc.yaml").write_text("stages:\n  s:\n    cmd: python stage.py\n    outs: [out]\n")
    dvc = subprocess.Popen(
        [str(BIN / "dvc"), "repro"], cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pid_file = folder / "pid"
    while not pid_file.exists() or not pid_file.read_text():
        time.sleep(0.005)
    pid = int(pid_file.read_text())
    time.sleep(delay)
    start = time.monotonic()
    dvc.send_signal(signal.SIGTERM)
    dvc.wait()
    while _state(pid) not in (None, "Z"):
        if time.monotonic() - start > GIVE_UP_S:
            os.kill(pid, signal.SIGKILL)
            return GIVE_UP_S
        time.sleep(0.005)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    seconds: dict[str, dict[str, list[float]]] = {}
    root = Path(tempfile.mkdtemp(prefix="depthcore-orphan-"))
    try:
        for work in WORK:
            for delay in DELAYS_S:
                runs = []
                for i in range(args.repeats):
                    folder = root / f"{work}-{delay}-{i}"
                    folder.mkdir()
                    runs.append(round(once(folder, work, delay), 3))
                seconds.setdefault(work, {})[str(delay)] = runs
                print(f"{work}, dvc killed {delay} s after the stage started: stopped after {runs} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    worst = max(s for by_delay in seconds.values() for runs in by_delay.values() for s in runs)
    print(f"worst: {worst:.3f} s from the kill of dvc to the stage's exit")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "date": time.strftime("%Y-%m-%d"),
                "repeats": args.repeats,
                "seconds_to_stop": seconds,
                "worst_s": worst,
                "give_up_s": GIVE_UP_S,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
