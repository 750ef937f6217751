"""Unfinished work left beside DVC outputs: ``<output>.partial`` stores and training states (``*.resume.pt``).

A kill leaves them for the rerun to resume. When DVC then restores the output from its run-cache instead
(the stage never runs), the leftover stays, up to gigabytes on NYUv2. :func:`unfinished_work` lists every
leftover no process is writing, with its size and whether its stage is now complete and up to date (then it
is stale: nothing will ever resume it); :func:`remove_stale` deletes the stale ones. ``make repro`` and
``make paper`` run ``python -m depthcore.pipeline partials --remove`` after DVC; leftovers of stages that are
not up to date are kept (``dvc repro`` resumes them) and reported with the command that removes them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from depthcore.config.paths import resume_state_of
from depthcore.data.store import partial_path
from depthcore.io import WriterLock, lock_path


@dataclass(frozen=True)
class Unfinished:
    """A leftover of ``stage`` at ``path`` (``size`` bytes); ``stale``: the stage is complete and up to date."""

    stage: str
    path: Path
    size: int
    stale: bool

    def describe(self) -> str:
        size = f"{self.size / 1e6:.3g} MB"
        if self.stale:
            return f"{self.path} ({size}): stale, {self.stage} is complete and up to date"
        return (
            f"{self.path} ({size}): unfinished work of {self.stage}, kept for `dvc repro` to resume "
            f"(remove it with `rm -rf {self.path}`)"
        )


def leftovers_of(output: Path) -> list[Path]:
    """Where unfinished work of a stage output may lie."""
    return [partial_path(output), resume_state_of(output)]


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def unfinished_work(root: Path | str = ".") -> list[Unfinished]:
    """Leftovers beside the outputs of every stage of the DVC project at ``root`` that no process is writing."""
    from dvc.repo import Repo

    found, root = [], Path(root).resolve()
    with Repo(str(root)) as repo, repo.lock:
        for stage in repo.index.stages:
            dvcfile = Path(stage.path).resolve().relative_to(root)
            name = stage.name if dvcfile == Path("dvc.yaml") else f"{dvcfile}:{stage.name}"
            outputs = [Path(out.fs_path) for out in stage.outs]
            leftovers = [p for out in outputs for p in leftovers_of(out) if p.exists() and not WriterLock.held(p)]
            if leftovers:
                stale = all(out.exists() for out in outputs) and not stage.status()
                found += [Unfinished(name, p, _size(p), stale) for p in leftovers]
    return found


def remove_stale(found: list[Unfinished]) -> list[Unfinished]:
    """Delete the stale leftovers of ``found`` (and their lock files); returns those removed."""
    removed = [item for item in found if item.stale]
    for item in removed:
        shutil.rmtree(item.path) if item.path.is_dir() else item.path.unlink()
        lock_path(item.path).unlink(missing_ok=True)
    return removed
