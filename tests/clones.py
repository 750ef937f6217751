"""DVC end to end in temporary clones of this repository: the clone (what a clone of the submitted tree holds),
dvc and git run in it, params edited the way `dvc exp run -S` does, and the offline run every end-to-end test
starts from (:func:`build_offline_run`, built once per test session by conftest's ``offline_run`` fixture)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from depthcore.config.offline import OFFLINE

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "depthcore test",
    "GIT_AUTHOR_EMAIL": "test@depthcore.invalid",
    "GIT_COMMITTER_NAME": "depthcore test",
    "GIT_COMMITTER_EMAIL": "test@depthcore.invalid",
}


def _env() -> dict[str, str]:
    """The environment of every command: the venv's dvc on PATH, no analytics, a git identity."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1", **GIT_IDENTITY}


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a command that must succeed (an AssertionError with the end of its output otherwise)."""
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
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
    set_params(dest, overrides)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "clone"]):
        run(cmd, dest)
    return dest


def dvc(clone: Path, *args: str) -> str:
    return run([str(BIN / "dvc"), *args], clone).stdout


def set_params(clone: Path, overrides: dict) -> None:
    params = yaml.safe_load((clone / "params.yaml").read_text())
    for dotted, value in overrides.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def changed(status: str) -> set[str]:
    """Stage names `dvc status` lists as changed."""
    return {
        line[:-1] for line in status.splitlines() if line and not line.startswith((" ", "\t")) and line.endswith(":")
    }


def fails(cmd: list[str], cwd: Path) -> str:
    """stdout + stderr of a command that must fail."""
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode != 0, proc.stdout[-3000:]
    return proc.stdout + proc.stderr


def dvc_fails(clone: Path, *args: str) -> str:
    """stdout + stderr of a dvc command that must fail."""
    return fails([str(BIN / "dvc"), *args], clone)


OFFLINE_RUN = OFFLINE | {
    "data.synthetic.images": 6,  # 3 rooms: one each for train, val and test
    "data.synthetic.views_per_room": 2,
    "train.preset": "custom",
    "train.epochs": 2,
    "train.batch_size": 2,
    "train.select": "last",  # 2 val images: keep the trained model (also the grid's one-epoch runs)
    "train.lr": 0.05,  # enough for 2 steps to lift the published MSA's clamped output above 0 m
    "adapters.msa.widths": [16, 16, 8, 8, 4, 4],
    "runtime.features_batch_size": 2,
}


def edit(clone: Path, path: str, old: str, new: str) -> None:
    """Replace ``old`` (which must occur) by ``new`` in a file of the clone."""
    text = (clone / path).read_text()
    assert old in text, (path, old)
    (clone / path).write_text(text.replace(old, new, 1))


def restore(clone: Path) -> None:
    run(["git", "checkout", "--", "."], clone)


def commit(clone: Path, message: str) -> None:
    run(["git", "add", "-A"], clone)
    run(["git", "commit", "-qm", message], clone)


@dataclass(frozen=True)
class OfflineRun:
    """A clone with :data:`OFFLINE_RUN`'s params after a full ``dvc repro``, committed (``path``), and what that
    first repro showed: the stages `dvc status` listed before it, and the stages it ran."""

    path: Path
    status_before: frozenset[str]
    ran: frozenset[str]

    def copy(self, dest: Path) -> Path:
        """A copy of the clone at ``dest`` (git, DVC cache and run-cache, workspace; DVC's temporary state
        rebuilt), to edit and run on without touching the shared original."""
        shutil.copytree(
            self.path, dest, symlinks=True, ignore=lambda folder, names: ["tmp"] if folder.endswith(".dvc") else []
        )
        return dest


def build_offline_run(dest: Path) -> OfflineRun:
    """Clone the repository into ``dest`` with OFFLINE_RUN's params, run `dvc repro` and commit the result."""
    dest.mkdir(parents=True, exist_ok=True)
    clone = make_clone(dest, OFFLINE_RUN)
    before = changed(dvc(clone, "status"))
    out = dvc(clone, "repro")
    commit(clone, "baseline run")
    return OfflineRun(clone, frozenset(before), frozenset(ran(out)))
