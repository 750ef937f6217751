"""Plugins by name: every adapter and every loss is a module of its package, registered under the module's name.

A plugin package (``depthcore.models.adapters``, ``depthcore.losses``) holds its shared modules (``base``,
``registry``, helpers whose names start with ``_``) and one module per plugin, ``<name>.py``, which registers
``name -> (settings class, builder)`` with :meth:`Registry.register`. A plugin is imported only when it is asked
for by name, so running one never imports (and, in DVC, never depends on) the others; listing them all (for
validation, for the list of valid names) imports each. Adding a plugin is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from depthcore.errors import ConfigError

SHARED_MODULES = ("base", "registry")


@dataclass(frozen=True)
class Plugin:
    """A registered plugin: its settings class and ``build(cfg=..., **context) -> the plugin object``."""

    name: str
    config: type
    build: Callable[..., Any]


class Registry:
    """The plugins of one package (``kind`` / ``plural``: what a plugin is, for messages; ``param``: the params key
    naming the chosen one)."""

    def __init__(self, package: str, *, kind: str, plural: str, param: str):
        self.package = package
        self.kind = kind
        self.plural = plural
        self.param = param
        self._plugins: dict[str, Plugin] = {}

    def register(self, name: str, *, config: type) -> Callable[[Callable], Callable]:
        """Decorator of a plugin's builder, used in the plugin's own module ``<name>.py``."""

        def decorate(build: Callable) -> Callable:
            module = build.__module__.rpartition(".")[2]
            if name != module:
                raise RuntimeError(f"{self.kind} {name!r} must be registered by its own module {name}.py, not {module}")
            if name in self._plugins:
                raise RuntimeError(f"{self.kind} {name!r} is registered twice")
            self._plugins[name] = Plugin(name=name, config=config, build=build)
            return build

        return decorate

    def names(self) -> list[str]:
        """Every plugin name (module names of the package, shared and ``_`` helper modules excluded), sorted."""
        package = importlib.import_module(self.package)
        return sorted(
            info.name
            for info in pkgutil.iter_modules(package.__path__)
            if info.name not in SHARED_MODULES and not info.name.startswith("_")
        )

    def get(self, name: str) -> Plugin:
        """The plugin ``name``, importing its module; ConfigError listing the valid names if there is none."""
        if name not in self._plugins:
            if name not in self.names():
                raise ConfigError(
                    f"params '{self.param}': unknown {self.kind} {name!r}; valid {self.plural} are {self.names()}"
                )
            importlib.import_module(f"{self.package}.{name}")
        return self._plugins[name]

    def all(self) -> dict[str, Plugin]:
        """Every plugin (imports them all: for the params schema and listings, never for a run)."""
        return {name: self.get(name) for name in self.names()}
