"""Which project files a stage runs: its script's imports followed through the project, statically.

The generated ``dvc.yaml`` and ``paper/dvc.yaml`` (:mod:`depthcore.pipeline.spec`) declare exactly these files
as each stage's code dependencies, and :func:`check_code_deps` checks any stage against them.

Two kinds of code are not followed through imports:

- declarations: the params schema (``depthcore/config/params.py``) only accepts or refuses values (a test
  checks they pass through unchanged): only the ``check`` stage, which runs it for that purpose, depends on
  it; the artifact paths (``depthcore/config/paths.py``) are also written into every stage's entry of the
  generated ``dvc.yaml`` files, so a changed path already changes the stages that use it;
- plugins (one module per adapter, per loss and per backbone, imported by name through
  :mod:`depthcore.registry`): a stage that builds *the chosen* adapter or loss depends on that plugin's files
  only, through the content hashes ``train_inputs`` records (main pipeline) or its own list (paper grid), and the
  stages of the chosen backbone through those ``backbone.json`` records; stages that may read any plugin
  (``train_inputs``, ``check``, ``backbone``) depend on the plugin packages whole.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("depthcore",)
STAGE_HELPER = "stages/common.py"
VALIDATION_ONLY = frozenset({"depthcore/config/params.py"})
DECLARATIONS = VALIDATION_ONLY | {"depthcore/config/paths.py"}
BACKBONE_PACKAGE = "depthcore/models/backbones/zoo"
PLUGIN_PACKAGES = ("depthcore/models/adapters", "depthcore/losses", BACKBONE_PACKAGE)


def module_path(name: str) -> str:
    """The repository-relative file of project module ``name`` (``common``: the stages' helper module)."""
    path = module_file(name)
    if path is None:
        raise ValueError(f"{name!r} is not a module of this project")
    return str(path.relative_to(REPO))


def module_file(name: str) -> Path | None:
    """The project file of module ``name``, or None for a module from outside the project."""
    if name == "common":
        return REPO / STAGE_HELPER
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO / name.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_files(path: Path) -> set[Path]:
    """Project files a module imports (anywhere in it, function bodies included), with the ``__init__.py``
    of each package on the way."""
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
    return files


def code_closure(script: Path | str, *, validation: bool = False) -> set[str]:
    """Every project file that running ``script`` executes (repository-relative paths), plugins chosen by name
    and the declarations excluded; ``validation``: follow the params schema too (the check stage)."""
    skipped = DECLARATIONS - (VALIDATION_ONLY if validation else set())
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


def covered(file: str, deps: list[str]) -> bool:
    """Whether ``file`` is one of ``deps`` or lies in a folder of them."""
    return any(file == dep or file.startswith(dep.rstrip("/") + "/") for dep in deps)


def check_code_deps(name: str, deps: list[str], closure: set[str]) -> list[str]:
    """Problems of a stage's code ``deps`` against the ``closure`` of files it runs: a file it runs that no
    dependency covers, or a dependency it never runs (needless re-runs)."""
    code = [dep for dep in deps if dep.startswith(("stages/", "depthcore/", "paper/")) and dep.endswith((".py", "/"))]
    code += [dep for dep in deps if (REPO / dep).is_dir() and dep.startswith("depthcore/")]
    problems = [f"stage {name} runs {f} but does not depend on it" for f in sorted(closure) if not covered(f, code)]
    problems += [
        f"stage {name} depends on {dep}, which it never runs"
        for dep in sorted(set(code))
        if not any(covered(f, [dep]) for f in closure)
    ]
    return problems
