"""dvc.yaml against the code: every stage depends on exactly the project code it runs, and on the
artifact paths declared once in depthcore.paths; .dvc/config and .dvcignore are safe."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import pytest
import yaml

from depthcore.paths import Paths

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("depthcore",)
# The params schema only accepts or refuses values (test_params checks they pass through unchanged),
# so it cannot change an output: no stage depends on it, and imports are not followed through it.
VALIDATION_ONLY = {"depthcore/params.py"}


def module_file(name: str, importer: Path) -> Path | None:
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
    """Project files a module imports (statically), with the __init__.py of each package on the way;
    a module that imports its package's modules dynamically (pkgutil) imports all of them."""
    source = path.read_text()
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]  # submodules imported by name
    files = {f for name in names if (f := module_file(name, path)) is not None}
    if "pkgutil.iter_modules" in source:
        files |= set(path.parent.glob("*.py"))
    for file in list(files):
        for parent in file.relative_to(REPO).parents:
            if (REPO / parent / "__init__.py").exists():
                files.add(REPO / parent / "__init__.py")
    return files


def code_closure(script: Path) -> set[str]:
    """Every project file that running ``script`` executes (repository-relative paths)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if str(path.relative_to(REPO)) not in VALIDATION_ONLY:
            todo += imported_files(path)
    return {str(p.relative_to(REPO)) for p in seen} - VALIDATION_ONLY


def stages(dvc_file: Path = REPO / "dvc.yaml") -> dict[str, dict]:
    return yaml.safe_load(dvc_file.read_text())["stages"]


def is_code(dep: str) -> bool:
    return dep.startswith(("stages/", "depthcore/"))


@pytest.mark.parametrize("name", list(stages()))
def test_stage_deps_cover_exactly_the_code_it_runs(name):
    stage = stages()[name]
    script = stage["cmd"].split()[1]
    assert stage["cmd"] == f"python {script}" and (REPO / script).exists()
    code_deps = [dep for dep in stage["deps"] if is_code(dep)]
    closure = code_closure(REPO / script)

    def covered(file: str) -> bool:
        return any(file == dep or file.startswith(dep.rstrip("/") + "/") for dep in code_deps)

    uncovered = sorted(f for f in closure if not covered(f))
    assert not uncovered, f"stage {name} runs {uncovered} but does not depend on it"
    unused = sorted(dep for dep in code_deps if not any(f == dep or f.startswith(dep + "/") for f in closure))
    assert not unused, f"stage {name} depends on {unused}, which it never runs (needless re-runs)"
    assert not set(code_deps) & VALIDATION_ONLY


def test_every_path_in_dvc_yaml_is_declared_in_depthcore_paths():
    declared = {str(value) for value in vars(Paths()).values()}
    declared |= {str(Paths().resume_state)}
    used = set()
    for stage in stages().values():
        used |= {dep for dep in stage.get("deps", []) if not is_code(dep)}
        for kind in ("outs", "metrics", "plots"):
            used |= {next(iter(o)) if isinstance(o, dict) else o for o in stage.get(kind, [])}
    assert used <= declared, sorted(used - declared)
    assert declared - {str(Paths().resume_state)} <= used, sorted(declared - used)


def test_dvc_config_is_safe_and_ignores_bytecode():
    config = configparser.ConfigParser()
    config.read_string((REPO / ".dvc/config").read_text().replace("    ", ""))
    assert config.get("core", "autostage", fallback="false") == "false"  # git sees every params edit
    # links (hardlink, symlink) would let an in-place edit of a workspace output corrupt the cache
    assert config.get("cache", "type", fallback="reflink,copy").replace('"', "") == "reflink,copy"
    ignore = (REPO / ".dvcignore").read_text().split()
    assert "__pycache__/" in ignore and "*.pyc" in ignore
