"""The layout shows the architecture: registries are the extension points (no module outside a loss names it,
none outside an adapter names its training phases), and dependencies run one way (stages -> depthcore; the
models, losses, geometry and metrics know nothing of files, stores, params or DVC; nothing the models, losses or
weights run, directly or through other modules, is of the params layer or the pipeline layer)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO, make_params

from depthcore.closure import code_closure, imported_files
from depthcore.losses.registry import LOSSES
from depthcore.models.adapters.registry import ADAPTERS

PACKAGE = REPO / "depthcore"
PURE = ("models", "losses", "geometry", "evaluation/metrics.py")  # no files, stores, params or DVC
UPPER_LAYERS = ("depthcore/config/", "depthcore/pipeline/")  # the params and pipeline layers
IMPURE = ("depthcore/io.py", "depthcore/data/store.py", "depthcore/weights/", *UPPER_LAYERS)
BELOW_CONFIG = ("models", "losses", "weights")  # the ground floor (registry, section, closure, io) and these


def modules(under: Path = PACKAGE) -> list[Path]:
    return sorted(under.rglob("*.py")) if under.is_dir() else [under]


def compared_strings(path: Path) -> set[str]:
    """String constants a module compares something with (``x == "ssl"``, ``phase in ("coarse", ...)``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                for const in ast.walk(operand):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        found.add(const.value)
    return found


def test_no_module_outside_a_loss_names_it():
    for path in modules():
        if path.parent.name == "losses":
            continue
        named = compared_strings(path) & set(LOSSES.names())
        assert not named, f"{path.relative_to(REPO)} tests for the loss(es) {named}: ask the loss's settings instead"


def test_no_module_outside_an_adapter_names_its_phases():
    params = make_params()
    for name in ADAPTERS.names():
        phases = {phase.name for phase in getattr(params.adapters, name).phases() if phase.name}
        phases |= {"coarse", "refine"} if name == "coarse_refine" else set()  # its two-stage phases
        package = ADAPTERS.package.replace(".", "/")
        owners = {f for f in code_closure(f"{package}/{name}.py") if f.startswith(package)}  # eigen: coarse_refine
        for path in modules():
            if str(path.relative_to(REPO)) in owners:
                continue
            assert not compared_strings(path) & phases, f"{path.relative_to(REPO)} names phases of {name}"


@pytest.mark.parametrize("part", PURE)
def test_models_losses_geometry_and_metrics_know_nothing_of_files_or_dvc(part):
    for path in modules(PACKAGE / part):
        imported = {str(f.relative_to(REPO)) for f in imported_files(path)}
        bad = sorted(f for f in imported if f.startswith(IMPURE))
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"
        text = path.read_text()
        assert "import dvc" not in text and "from dvc" not in text and "import zarr" not in text, path


@pytest.mark.parametrize("part", BELOW_CONFIG)
def test_models_losses_and_weights_run_nothing_of_the_params_or_pipeline_layers(part):
    for path in modules(PACKAGE / part):
        runs = code_closure(path.relative_to(REPO))
        bad = sorted(f for f in runs if f.startswith(UPPER_LAYERS))
        assert not bad, f"{path.relative_to(REPO)} runs {bad}"


def test_dependencies_run_one_way():
    for path in modules():
        imported = {str(f.relative_to(REPO)) for f in imported_files(path)}
        assert not any(f.startswith(("stages/", "paper/")) for f in imported), path  # depthcore never imports stages
        if "/data/" in str(path):
            assert not any(f.startswith(("depthcore/models/", "depthcore/training/")) for f in imported), path
        if "/training/" in str(path):
            assert not any(f.startswith(("depthcore/evaluation/", "depthcore/paper/")) for f in imported), path
