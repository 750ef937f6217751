"""Which project files a stage runs, as the generated pipelines declare them (the import following itself is
:mod:`depthcore.closure`, on the ground floor).

The generated ``dvc.yaml`` and ``paper/dvc.yaml`` (:mod:`depthcore.pipeline.spec`) declare exactly these files
as each stage's code dependencies, and :func:`check_code_deps` checks any stage against them.

Two kinds of code are not followed through imports:

- declarations: the params schema (``depthcore/config/params.py``) only accepts or refuses values (a test
  checks they pass through unchanged): only the ``check`` stage, which runs it for that purpose, depends on
  it; the artifact paths (``depthcore/config/paths.py``) are also written into every stage's entry of the
  generated ``dvc.yaml`` files, so a changed path already changes the stages that use it;
- plugins (one module per adapter and per loss, one per backbone family, imported by name through
  :mod:`depthcore.registry`): a stage that builds *the chosen* adapter or loss depends on that plugin's files
  only, through the content hashes ``train_inputs`` records (main pipeline) or its own list (paper grid), and the
  stages of the chosen backbone through those ``backbone.json`` records; stages that may read any plugin
  (``train_inputs``, ``check``, ``backbone``) depend on the plugin packages whole.
"""

from __future__ import annotations

from pathlib import Path

from depthcore import closure
from depthcore.closure import REPO

VALIDATION_ONLY = frozenset({"depthcore/config/params.py"})
DECLARATIONS = VALIDATION_ONLY | {"depthcore/config/paths.py"}
BACKBONE_PACKAGE = "depthcore/models/backbones/zoo"
PLUGIN_PACKAGES = ("depthcore/models/adapters", "depthcore/losses", BACKBONE_PACKAGE)


def code_closure(script: Path | str, *, validation: bool = False) -> set[str]:
    """Every project file that running ``script`` executes (repository-relative paths), plugins chosen by name
    and the declarations excluded; ``validation``: follow the params schema too (the check stage)."""
    return closure.code_closure(script, skip=DECLARATIONS - (VALIDATION_ONLY if validation else set()))


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
