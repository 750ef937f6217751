"""Both dvc.yaml files against the code, by one generator and one checker: each is what its source gives
(the stage specs; paper/rows.yaml and params.yaml), every stage depends on exactly the project code it runs
(its scripts' imports, and for a grid run its row's adapter and loss), every path is declared once in
depthcore.config.paths, and .dvc/config and .dvcignore are safe."""

from __future__ import annotations

import configparser
import dataclasses
import functools
import shlex
import subprocess

import pytest
import yaml
from conftest import REPO

from depthcore.config.params import load_params
from depthcore.config.paths import GRID_DVC_FILE, MAIN_DVC_FILE, Paths
from depthcore.paper.grid import STAGE_RUNNER, grid_dvc_yaml
from depthcore.paper.rows import load_rows, row_params
from depthcore.pipeline.deps import PLUGIN_PACKAGES, check_code_deps, code_closure, covered
from depthcore.pipeline.spec import SPECS, main_dvc_yaml, stage_closure
from depthcore.training.inputs import plugin_files


@functools.cache
def grid_text() -> str:
    """What ``make paper`` writes as paper/dvc.yaml for this checkout's params.yaml and rows."""
    return grid_dvc_yaml(load_params(REPO / "params.yaml"), load_rows())


@functools.cache
def stages(dvc_file) -> dict[str, dict]:
    """The stages of ``dvc_file``, parsed once (read only: the grid's YAML takes half a second to parse)."""
    text = grid_text() if dvc_file == GRID_DVC_FILE else (REPO / dvc_file).read_text()
    return yaml.safe_load(text)["stages"]


def test_both_files_are_what_their_sources_give():
    assert (REPO / MAIN_DVC_FILE).read_text() == main_dvc_yaml(), "run `make pipeline`"
    if (REPO / GRID_DVC_FILE).exists():  # written by make paper / make paper-grid, not shipped
        assert (REPO / GRID_DVC_FILE).read_text() == grid_text(), "run `make paper-grid`"
    tracked = subprocess.run(["git", "ls-files", str(GRID_DVC_FILE)], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode == 0:  # a git checkout: a fresh clone has no grid for dvc status / checkout to list
        assert tracked.stdout.strip() == "", f"{GRID_DVC_FILE} is generated; do not commit it to the repository"


def runs(name: str, entry: dict) -> set[str]:
    """The files a stage runs, read off its command independently of the generator: its scripts' closures,
    the row's plugins for a grid run, the plugin packages for a stage that reads any plugin."""
    words = shlex.split(entry["cmd"])
    script = words[1]
    if script == STAGE_RUNNER:
        spec = SPECS.get(words[2])
        files = code_closure(STAGE_RUNNER) | code_closure(f"stages/{words[2]}.py")
        if "--row" in words and words[2] in ("train", "evaluate"):
            row_id = words[words.index("--row") + 1]
            params = row_params(load_params(REPO / "params.yaml"), row_id, load_rows()[row_id])
            files |= set(plugin_files(params, loss=words[2] == "train"))
        assert spec is None or spec.plugins != "all", name
        return files
    if script.startswith("stages/"):
        return stage_closure(SPECS[name])
    return code_closure(script, validation=True) | set(PLUGIN_PACKAGES)  # the grid's check validates everything


@pytest.mark.parametrize(
    ("dvc_file", "name"),
    [(f, name) for f in (MAIN_DVC_FILE, GRID_DVC_FILE) for name in stages(f)],
)
def test_stage_depends_on_exactly_the_code_it_runs(dvc_file, name):
    entry = stages(dvc_file)[name]
    assert check_code_deps(name, entry["deps"], runs(name, entry)) == []
    if dvc_file == MAIN_DVC_FILE and SPECS[name].plugins == "chosen":  # its plugins' code, through the hashes
        assert str(Paths().train_inputs) in entry["deps"]


def test_the_checker_finds_a_missing_and_a_needless_dependency():
    entry = stages(MAIN_DVC_FILE)["train"]
    deps = [d for d in entry["deps"] if d != "depthcore/training/loop.py"] + ["depthcore/evaluation/figures.py"]
    problems = check_code_deps("train", deps, runs("train", entry))
    assert problems == [
        "stage train runs depthcore/training/loop.py but does not depend on it",
        "stage train depends on depthcore/evaluation/figures.py, which it never runs",
    ]


def test_training_never_depends_on_evaluation_report_figure_or_download_code():
    for dvc_file in (MAIN_DVC_FILE, GRID_DVC_FILE):
        for name, entry in stages(dvc_file).items():
            if name == "train" or name.startswith("train-"):
                bad = [d for d in entry["deps"] if covered(d, ["depthcore/evaluation", "depthcore/paper/report.py"])]
                bad += [d for d in entry["deps"] if d in ("depthcore/download.py", "depthcore/paper/grid.py")]
                assert not bad, (name, bad)


def used_paths(dvc_file) -> set[str]:
    used = set()
    for stage in stages(dvc_file).values():
        used |= {dep for dep in stage.get("deps", []) if not dep.startswith(("stages/", "depthcore/", "paper/"))}
        for kind in ("outs", "metrics", "plots"):
            used |= {next(iter(o)) if isinstance(o, dict) else o for o in stage.get(kind, [])}
    return used


def test_every_path_of_the_main_pipeline_is_declared_once_and_used():
    declared = {f.name: str(getattr(Paths(), f.name)) for f in dataclasses.fields(Paths)}
    grid_only = {"grid_check", "paper_metrics", "paper_report", "paper_figure", "paper_backbones_figure"}
    kept = {"weights_downloads"}  # released weights kept for a switch of backbone back: no stage's output
    used = used_paths(MAIN_DVC_FILE) - {"params.yaml"}
    assert used <= set(declared.values()), sorted(used - set(declared.values()))
    assert not {name for name, path in declared.items() if path not in used} - grid_only - kept
    assert {declared[name] for name in grid_only} <= used_paths(GRID_DVC_FILE)


def test_dvc_config_is_safe_and_ignores_bytecode():
    config = configparser.ConfigParser()
    config.read_string((REPO / ".dvc/config").read_text().replace("    ", ""))
    assert config.get("core", "autostage", fallback="false") == "false"  # git sees every params edit
    # links, not copies (a queued grid run adds its own outputs only); DVC makes them read-only, so an in-place
    # edit by a user cannot corrupt the cache through them (tests/test_queue_disk.py shows both)
    assert config.get("cache", "type").replace('"', "") == "hardlink,symlink"
    ignore = (REPO / ".dvcignore").read_text().split()
    assert "__pycache__/" in ignore and "*.pyc" in ignore
