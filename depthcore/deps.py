"""Which project files a stage script runs: its imports followed through the project, statically.

``dvc.yaml`` (and the generated ``paper/dvc.yaml``) declare exactly these files as each stage's code
dependencies; tests/test_dvc_yaml.py checks it. The params schema (``depthcore/params.py``) only accepts
or refuses values (a test checks they pass through unchanged), so it cannot change an output: imports
are not followed through it and no stage depends on it.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("depthcore",)
VALIDATION_ONLY = {"depthcore/params.py"}
REGISTRY_DIRS = ("depthcore/models/adapters",)  # imported whole (every adapter registers itself): one dep


def module_file(name: str) -> Path | None:
    """The project file of module ``name`` (``common`` is the stages' sibling module), or None."""
    if name == "common":
        return REPO / "stages/common.py"
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO / name.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_files(path: Path) -> set[Path]:
    """Project files a module imports, with the ``__init__.py`` of each package on the way; a module that
    imports its package's modules dynamically (pkgutil) imports all of them."""
    source = path.read_text()
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    files = {f for name in names if (f := module_file(name)) is not None}
    if "pkgutil.iter_modules" in source:
        files |= set(path.parent.glob("*.py"))
    for file in list(files):
        for parent in file.relative_to(REPO).parents:
            if (REPO / parent / "__init__.py").exists():
                files.add(REPO / parent / "__init__.py")
    return files


def code_closure(script: Path | str) -> set[str]:
    """Every project file that running ``script`` executes (repository-relative paths)."""
    seen: set[Path] = set()
    todo = [REPO / script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if str(path.relative_to(REPO)) not in VALIDATION_ONLY:
            todo += imported_files(path)
    return {str(p.relative_to(REPO)) for p in seen} - VALIDATION_ONLY


def code_deps(script: str) -> list[str]:
    """The code dependencies to declare for ``script``: itself, stages/common.py, then its other files, with
    each registry directory as one dependency."""
    files = code_closure(script)
    deps = {next((d for d in REGISTRY_DIRS if f.startswith(d + "/")), f) for f in files}
    first = [script, "stages/common.py"]
    return first + sorted(deps - set(first))
