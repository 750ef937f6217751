"""dvc.yaml against the code: every stage depends on exactly the project code it runs, and on the
artifact paths declared once in depthcore.paths; .dvc/config and .dvcignore are safe."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import yaml

from depthcore.deps import VALIDATION_ONLY, code_closure
from depthcore.paths import Paths

REPO = Path(__file__).resolve().parents[1]


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
    closure = code_closure(script)

    def covered(file: str) -> bool:
        return any(file == dep or file.startswith(dep.rstrip("/") + "/") for dep in code_deps)

    uncovered = sorted(f for f in closure if not covered(f))
    assert not uncovered, f"stage {name} runs {uncovered} but does not depend on it"
    unused = sorted(dep for dep in code_deps if not any(f == dep or f.startswith(dep + "/") for f in closure))
    assert not unused, f"stage {name} depends on {unused}, which it never runs (needless re-runs)"
    assert not set(code_deps) & VALIDATION_ONLY


def used_paths(dvc_file: Path) -> set[str]:
    used = set()
    for stage in stages(dvc_file).values():
        used |= {dep for dep in stage.get("deps", []) if not is_code(dep)}
        for kind in ("outs", "metrics", "plots"):
            used |= {next(iter(o)) if isinstance(o, dict) else o for o in stage.get(kind, [])}
    return used


def test_every_path_in_dvc_yaml_is_declared_in_depthcore_paths():
    declared = {name: str(value) for name, value in vars(Paths()).items()}
    grid_only = {name for name in declared if name.startswith("paper_")}
    used = used_paths(REPO / "dvc.yaml")
    assert used <= set(declared.values()), sorted(used - set(declared.values()))
    unused = {name for name, path in declared.items() if path not in used} - grid_only
    assert not unused, sorted(unused)
    assert {declared[name] for name in grid_only} <= used_paths(REPO / "paper/dvc.yaml")


def test_dvc_config_is_safe_and_ignores_bytecode():
    config = configparser.ConfigParser()
    config.read_string((REPO / ".dvc/config").read_text().replace("    ", ""))
    assert config.get("core", "autostage", fallback="false") == "false"  # git sees every params edit
    # links (hardlink, symlink) would let an in-place edit of a workspace output corrupt the cache
    assert config.get("cache", "type", fallback="reflink,copy").replace('"', "") == "reflink,copy"
    ignore = (REPO / ".dvcignore").read_text().split()
    assert "__pycache__/" in ignore and "*.pyc" in ignore
