"""Every DVC-tracked output checked byte for byte against the checksums DVC recorded for it (the MD5 of each file in
``dvc.lock`` or a ``.dvc`` file, a directory's files through its listing in the cache), and the one command that
repairs a corrupt one: ``python -m depthcore.pipeline verify`` and ``python -m depthcore.pipeline repair [PATH...]``.

Why a command of its own: ``.dvc/config`` links outputs to the cache (``cache.type: hardlink,symlink``), so a
workspace file and its cache object are one file and a flipped byte corrupts both. ``dvc status`` trusts size, mtime
and inode and says up to date; ``dvc checkout --relink --force`` re-links the corrupt object; ``dvc repro`` restores
it from the run-cache; and ``dvc repro -f`` recomputes, then links the output back to the corrupt object, whose name
(its MD5) is still the right one. ``repair`` deletes a corrupt cache object together with the corrupt workspace
file, then recomputes the output (``dvc repro -f -s <stage>``; from a configured remote with ``dvc pull`` first,
when it has the output), so that DVC stores the fresh bytes; a workspace file whose cache object is intact (a
copied cache, or a second output that shares the object) is restored with ``dvc checkout --relink --force``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from depthcore.errors import DepthcoreError
from depthcore.io import HASH_BLOCK_BYTES

COMMAND = "python -m depthcore.pipeline repair"


class RepairError(DepthcoreError, RuntimeError):
    """An output could not be repaired (nothing to recompute it from, or it is still corrupt afterwards)."""


def md5_of(path: Path) -> str:
    """Hex MD5 of a file's bytes (what DVC 3 records), read afresh: never DVC's state database of mtimes."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def repair_command(path: str) -> str:
    """The command that repairs the output at ``path`` (what every integrity error and ``verify`` print)."""
    return f"{COMMAND} {path}"


@dataclass
class BadFile:
    """A file of an output whose bytes are not those recorded, or whose cache object is corrupt."""

    relpath: str  # inside the output ('' for a file output)
    workspace_ok: bool  # the workspace file is there with the recorded bytes
    cache_object: Path | None  # its DVC cache object (None: an uncached output)
    object_ok: bool  # that object is there with the recorded bytes (False for an uncached output)
    shared: bool  # the workspace file and the object are one file (a link)


@dataclass
class Damage:
    """What is wrong with one output."""

    path: str  # repository-relative
    stage: str | None  # the stage that recomputes it (its DVC address), None for a .dvc file's output
    persist: bool
    files: int  # files the output records
    bad: list[BadFile] = field(default_factory=list)
    listing: Path | None = None  # a directory listing (.dir object) that is corrupt
    unreadable_listing: bool = False

    @property
    def corrupt_objects(self) -> list[Path]:
        found = [b.cache_object for b in self.bad if b.cache_object is not None and not b.object_ok]
        return [p for p in found if p.exists()] + ([self.listing] if self.listing is not None else [])

    def plan(self) -> str:
        """What ``repair`` does for it, in words."""
        deleting = "deletes the corrupt DVC cache object(s), then " if self.corrupt_objects else ""
        if self.unreadable_listing or any(not b.workspace_ok and not b.object_ok for b in self.bad):
            recompute = f"recomputes it (`dvc repro -f -s {self.stage}`)" if self.stage else "pulls it (`dvc pull`)"
            cached = self.listing is not None or any(b.cache_object is not None for b in self.bad)
            remote = "restores it from a DVC remote that has it, else " if cached and self.stage else ""
            return deleting + remote + recompute
        if any(not b.workspace_ok for b in self.bad):
            return f"{deleting}restores it from the intact cache (`dvc checkout --relink --force {self.path}`)"
        return f"{deleting}stores the intact workspace copy again (`dvc commit --force {self.path}`)"

    def describe(self) -> str:
        names = [b.relpath or Path(self.path).name for b in self.bad]
        what = []
        if self.unreadable_listing:
            what.append("its DVC directory listing (.dir object) is corrupt")
        ws = [n for n, b in zip(names, self.bad, strict=True) if not b.workspace_ok]
        if ws:
            shown = ", ".join(ws[:3]) + (f" and {len(ws) - 3} more" if len(ws) > 3 else "")
            linked = any(b.shared for b in self.bad)
            what.append(
                f"{len(ws)} of {self.files} file(s) differ from the recorded checksum ({shown})"
                + ("; the DVC cache holds the same bytes (a link)" if linked else "")
            )
        objects = [b for b in self.bad if b.workspace_ok and not b.object_ok and b.cache_object is not None]
        if objects:
            what.append(f"{len(objects)} DVC cache object(s) of intact workspace files are corrupt")
        return f"corrupt: {self.path}: {'; '.join(what)}\n  repair: {repair_command(self.path)}  ({self.plan()})"


@dataclass
class Report:
    damaged: list[Damage]
    checked: int
    files: int
    bytes: int
    missing: list[str]
    skipped: list[str]
    root: Path


def _repo(root: Path | None = None):
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Repo(str(root) if root is not None else None)
    except NotDvcRepoError:
        raise RepairError(f"{root or Path.cwd()} is not in a DVC repository: run this in the checkout") from None


def _stage_address(out) -> str | None:
    stage = out.stage
    return stage.addressing if getattr(stage, "cmd", None) else None


def _check_files(
    pairs: list[tuple[str, Path, str, Path | None]], pool: ThreadPoolExecutor
) -> tuple[list[BadFile], int]:
    """(relpath, workspace file, recorded md5, cache object) -> the bad ones and the bytes read, hashed in
    parallel (a linked object is the workspace file itself: hashed once)."""

    def one(item: tuple[str, Path, str, Path | None]) -> tuple[BadFile | None, int]:
        relpath, workspace, expected, obj = item
        try:
            ws_stat = workspace.stat()
        except OSError:
            ws_stat = None
        ws_md5 = md5_of(workspace) if ws_stat is not None else None
        shared, object_ok = False, obj is not None  # an uncached output has no copy to restore from
        if obj is not None:
            try:
                obj_stat = obj.stat()
            except OSError:
                obj_stat = None
            if obj_stat is None:
                object_ok = False  # no object: nothing in the cache to restore from (not corruption by itself)
            elif ws_stat is not None and (obj_stat.st_ino, obj_stat.st_dev) == (ws_stat.st_ino, ws_stat.st_dev):
                shared, object_ok = True, ws_md5 == expected
            else:
                object_ok = md5_of(obj) == expected
        workspace_ok = ws_md5 == expected
        corrupt_object = obj is not None and obj.exists() and not object_ok
        size = ws_stat.st_size if ws_stat is not None else 0
        if workspace_ok and not corrupt_object:
            return None, size
        return BadFile(relpath, workspace_ok, obj, object_ok, shared), size

    results = list(pool.map(one, pairs))
    return [bad for bad, _ in results if bad is not None], sum(size for _, size in results)


def check_out(out, root: Path, pool: ThreadPoolExecutor) -> tuple[Damage | None, int, int] | str:
    """The damage of one DVC output (None: intact) with its file count and bytes, or why it was not checked."""
    path = os.path.relpath(out.fs_path, root)
    if out.hash_info is None or not out.hash_info.value:
        return "not recorded yet"
    if out.hash_name != "md5":
        return f"hashed as {out.hash_name} (not checked)"
    workspace = Path(out.fs_path)
    if not workspace.exists():
        return "missing"
    cache = out.cache if out.use_cache else None
    damage = Damage(path, _stage_address(out), bool(out.persist), files=1)
    value = out.hash_info.value
    if not out.hash_info.isdir:
        bad, size = _check_files([("", workspace, value, Path(cache.oid_to_path(value)) if cache else None)], pool)
        damage.bad = bad
        return (damage if bad else None), 1, size
    if cache is None:
        return "an uncached directory (not checked)"
    listing = Path(cache.oid_to_path(value))
    if not listing.exists():
        return "its DVC directory listing is not in the cache (not checked)"
    try:
        entries = json.loads(listing.read_bytes())
        if md5_of(listing) != value.removesuffix(".dir"):
            raise ValueError("checksum")
    except ValueError:
        damage.listing, damage.unreadable_listing = listing, True
        return damage, 0, 0
    pairs = [(e["relpath"], workspace / e["relpath"], e["md5"], Path(cache.oid_to_path(e["md5"]))) for e in entries]
    damage.files = len(pairs)
    damage.bad, size = _check_files(pairs, pool)
    return (damage if damage.bad else None), len(pairs), size


def _in_order(repo) -> list:
    """Every output of the repository's pipelines and .dvc files, upstream stages first."""
    import networkx as nx

    order = {stage: i for i, stage in enumerate(reversed(list(nx.topological_sort(repo.index.graph))))}
    return sorted(repo.index.outs, key=lambda out: order.get(out.stage, len(order)))


def _selected(out, targets: list[Path] | None) -> bool:
    if not targets:
        return True
    path = Path(out.fs_path)
    return any(path == t or t in path.parents or path in t.parents for t in targets)


def verify(targets: list[str] | None = None, *, root: Path | None = None) -> Report:
    """Check every output (or those at, under or above ``targets``) against its recorded checksums."""
    with _repo(root) as repo:
        root = Path(repo.root_dir)
        resolved = [Path(os.path.abspath(t)) for t in targets] if targets else None
        outs = [out for out in _in_order(repo) if _selected(out, resolved)]
        if resolved and not outs:
            raise RepairError(
                f"{', '.join(targets)} is no DVC-tracked output of {root} nor inside one: nothing records what it "
                "should hold (delete it and rerun the command that made it)"
            )
        report = Report([], 0, 0, 0, [], [], root)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for out in outs:
                result = check_out(out, root, pool)
                rel = os.path.relpath(out.fs_path, root)
                if isinstance(result, str):
                    (report.missing if result == "missing" else report.skipped).append(f"{rel}: {result}")
                    continue
                damage, files, size = result
                report.checked += 1
                report.files += files
                report.bytes += size
                if damage is not None:
                    report.damaged.append(damage)
    return report


def _env() -> dict[str, str]:
    """The environment of the dvc commands: this interpreter's environment first on PATH (the stages' python)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _dvc(root: Path, *args: str, check: bool = True) -> bool:
    dvc = shutil.which("dvc", path=_env()["PATH"]) or "dvc"
    print(f"$ dvc {' '.join(args)}", flush=True)
    done = subprocess.run([dvc, *args], cwd=root, env=_env())
    if check and done.returncode != 0:
        raise RepairError(f"`dvc {' '.join(args)}` failed (exit status {done.returncode}); see its output above")
    return done.returncode == 0


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def repair_one(damage: Damage, root: Path) -> None:
    """Make one damaged output whole again (see the module's docstring); RepairError if it cannot be."""
    for obj in damage.corrupt_objects:
        obj.unlink(missing_ok=True)
        print(f"deleted the corrupt DVC cache object {os.path.relpath(obj, root)}")
    workspace = root / damage.path
    if not damage.unreadable_listing and all(b.workspace_ok for b in damage.bad):
        _dvc(root, "commit", "--force", damage.path)  # the intact workspace bytes go back into the cache
        return
    if not damage.unreadable_listing and all(b.workspace_ok or b.object_ok for b in damage.bad):
        _dvc(root, "checkout", "--relink", "--force", damage.path)
        return
    # nothing local holds the right bytes: delete the corrupt files (a persistent output's whole top-level entry, as
    # its stage may keep and skip what it finds), then pull from a remote or recompute
    if damage.unreadable_listing or not workspace.is_dir():
        doomed = {workspace}
    else:
        doomed = {workspace / (Path(b.relpath).parts[0] if damage.persist else b.relpath) for b in damage.bad}
    for path in sorted(doomed):
        _remove(path)
    remotes = subprocess.run(
        [shutil.which("dvc", path=_env()["PATH"]) or "dvc", "remote", "list"],
        cwd=root,
        env=_env(),
        capture_output=True,
        text=True,
    ).stdout.strip()
    cached = damage.listing is not None or any(b.cache_object is not None for b in damage.bad)
    if remotes and cached and _dvc(root, "pull", damage.path, check=False):
        return
    if damage.stage is None:
        raise RepairError(
            f"{damage.path} is tracked by a .dvc file and no remote has it: nothing can recompute it; add the "
            f"original again (`dvc add {damage.path}`)"
        )
    _dvc(root, "repro", "--force", "--single-item", damage.stage)


def repair(targets: list[str] | None = None, *, root: Path | None = None) -> list[str]:
    """Repair every corrupt output (or those of ``targets``), upstream first, each checked again afterwards;
    the repaired paths. RepairError naming what is still corrupt."""
    report = verify(targets, root=root)
    repaired = []
    base = report.root
    for damage in report.damaged:
        print(damage.describe(), flush=True)
        again = verify([str(base / damage.path)], root=base).damaged  # an earlier repair may have fixed it
        if not again:
            continue
        repair_one(again[0], base)
        still = verify([str(base / damage.path)], root=base).damaged
        if still:
            raise RepairError(f"{damage.path} is still corrupt after the repair:\n{still[0].describe()}")
        print(f"repaired {damage.path}", flush=True)
        repaired.append(damage.path)
    return repaired


def main_verify(targets: list[str] | None = None) -> int:
    """``verify``: print every corrupt output and its repair command; 1 if any, 0 if none, 2 if it cannot check."""
    start = time.monotonic()
    try:
        report = verify(targets)
    except RepairError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for damage in report.damaged:
        print(damage.describe())
    for line in report.missing:
        print(f"not in the workspace: {line.removesuffix(': missing')} (`dvc checkout` or `dvc repro` brings it)")
    for line in report.skipped:
        print(f"not checked: {line}")
    print(
        f"checked {report.checked} outputs ({report.files} files, {report.bytes / 1e9:.2f} GB) against their "
        f"recorded checksums in {time.monotonic() - start:.1f} s: "
        + (f"{len(report.damaged)} corrupt" if report.damaged else "all intact")
    )
    if len(report.damaged) > 1:
        print(f"repair them all, upstream first: {COMMAND}")
    return 1 if report.damaged else 0


def main_repair(targets: list[str] | None = None) -> int:
    """``repair``: repair what is corrupt; 1 with the reason if something cannot be."""
    try:
        repaired = repair(targets)
    except RepairError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"repaired {len(repaired)} output(s)" + (f": {', '.join(repaired)}" if repaired else ": nothing is corrupt"))
    return 0
