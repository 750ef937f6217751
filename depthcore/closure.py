"""Which project files a module runs: its imports followed through the project, statically.

The ground floor of the code-dependency machinery: :mod:`depthcore.pipeline.deps` declares each stage's code
dependencies with it, and the ``backbone`` and ``train_inputs`` stages hash the chosen plugin's files with it
(:func:`code_hashes`). It imports only the ground floor (:mod:`depthcore.io`), so any layer may use it.

A file is parsed once per process while its modification time and size stay the same: the pipeline generators
follow the same hundred modules for every stage and grid row.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from depthcore.io import sha256_of

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("depthcore",)
STAGE_HELPER = "stages/common.py"  # imported by the stage scripts as ``common``

_IMPORTS: dict[Path, tuple[tuple[int, int], frozenset[Path]]] = {}  # path -> ((mtime_ns, size), its imports)


def module_file(name: str) -> Path | None:
    """The project file of module ``name`` (``common``: the stages' helper), None for a module from outside."""
    if name == "common":
        return REPO / STAGE_HELPER
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO / name.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def module_path(name: str) -> str:
    """The repository-relative file of project module ``name``; ValueError for a module from outside."""
    path = module_file(name)
    if path is None:
        raise ValueError(f"{name!r} is not a module of this project")
    return str(path.relative_to(REPO))


def imported_files(path: Path) -> frozenset[Path]:
    """Project files a module imports (anywhere in it, function bodies included), with the ``__init__.py`` of
    each package on the way. Memoised on the file's modification time and size."""
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    known = _IMPORTS.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    files = {f for name in names if (f := module_file(name)) is not None}
    for file in list(files):
        for parent in file.relative_to(REPO).parents:
            if (REPO / parent / "__init__.py").exists():
                files.add(REPO / parent / "__init__.py")
    _IMPORTS[path] = (stamp, frozenset(files))
    return _IMPORTS[path][1]


def code_closure(script: Path | str, *, skip: Iterable[str] = ()) -> set[str]:
    """Every project file that running ``script`` (repository-relative) executes, as repository-relative paths;
    files in ``skip`` are neither followed nor listed."""
    skipped = set(skip)
    seen: set[Path] = set()
    todo = [REPO / script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if str(path.relative_to(REPO)) not in skipped:
            todo += imported_files(path)
    return {str(p.relative_to(REPO)) for p in seen} - skipped


def code_hashes(module: str) -> dict[str, str]:
    """SHA-256 of every file project module ``module`` runs (repository-relative path -> hex digest), sorted:
    what a stage that builds one chosen plugin records, so that only that plugin's code re-runs it."""
    return {f: sha256_of(REPO / f) for f in sorted(code_closure(module_path(module)))}
