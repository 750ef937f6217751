"""Dotted keys of params (``train.lr``): overrides of a params dict, as ``dvc exp run -S`` sets them (the paper
grid's rows, the tests and the benchmarks), and the values a stage declares, read back."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from depthcore.errors import ConfigError


def with_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with each dotted key of ``overrides`` set; a key that does not exist in
    ``raw`` is refused (overrides change settings, they never add new ones)."""
    out = copy.deepcopy(dict(raw))
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for depth, key in enumerate(parents):
            if not isinstance(node.get(key), dict):
                section = ".".join(parents[: depth + 1])
                raise ConfigError(f"params '{section}' is not a section: cannot set '{dotted}'")
            node = node[key]
        if leaf not in node:
            raise ConfigError(f"params '{dotted}': unknown key; valid keys at that level are {sorted(node)}")
        node[leaf] = value
    return out


def dotted_values(params, keys) -> dict[str, Any]:
    """The value (JSON form) of each dotted key of ``keys`` in the validated ``params``: what DVC compares."""
    dumped = params.model_dump(mode="json")
    out = {}
    for key in keys:
        node = dumped
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out
