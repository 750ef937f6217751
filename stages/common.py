"""What every stage script shares: reading its params sections and turning known errors into
one clear message and a non-zero exit (instead of a traceback)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = Path("params.yaml")


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The whole params.yaml as a dict."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the stages from the repository root (dvc repro does)")
    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def run(main: Callable[[dict[str, Any]], None]) -> None:
    """Call ``main(params)``; print depthcore's user-facing errors briefly and exit 1."""
    from depthcore.errors import DepthcoreError

    try:
        main(load_params())
    except (DepthcoreError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
