"""Plugins by name: every adapter, loss and backbone is registered by a module of its package.

A plugin package (``depthcore.models.adapters``, ``depthcore.losses``, ``depthcore.models.backbones.zoo``) holds
its shared modules (``base``, ``registry``, helpers whose names start with ``_``) and plugin modules. A plugin
module ``<name>.py`` registers ``name -> (settings class, builder)`` with :meth:`Registry.register`, or, for a
family of variants (timm's style: a variant is a few lines), the names ``<name>_<variant>`` (``dinov2.py``
registers ``dinov2_vits14`` and ``dinov2_vitb14``). A plugin is imported only when it is asked for by name (its
module is the longest plugin module name it starts with), so running one never imports (and, in DVC, never
depends on) the other modules; listing them all (for validation, for the list of valid names) imports each.
Adding a plugin is one new file, or a few lines in its family's file.
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
    """A registered plugin: its settings class, ``build(cfg=..., **context) -> the plugin object``, the module
    that registered it and what the package knows of it besides (``spec``: e.g. a backbone's facts and releases)."""

    name: str
    config: type
    build: Callable[..., Any]
    module: str
    spec: Any = None


class Registry:
    """The plugins of one package (``kind`` / ``plural``: what a plugin is, for messages; ``param``: the params key
    naming the chosen one)."""

    def __init__(self, package: str, *, kind: str, plural: str, param: str):
        self.package = package
        self.kind = kind
        self.plural = plural
        self.param = param
        self._plugins: dict[str, Plugin] = {}

    def register(self, name: str, *, config: type, spec: Any = None) -> Callable[[Callable], Callable]:
        """Decorator of a plugin's builder, used in the plugin's own module ``<name>.py`` (or its family's module
        ``<family>.py`` for ``name`` = ``<family>_<variant>``)."""

        def decorate(build: Callable) -> Callable:
            module = build.__module__.rpartition(".")[2]
            if name != module and not name.startswith(f"{module}_"):
                raise RuntimeError(
                    f"{self.kind} {name!r} must be registered by its own module {name}.py or its family's "
                    f"(<family>.py for <family>_<variant>), not {module}.py"
                )
            if name in self._plugins:
                raise RuntimeError(f"{self.kind} {name!r} is registered twice")
            self._plugins[name] = Plugin(name=name, config=config, build=build, module=build.__module__, spec=spec)
            return build

        return decorate

    def modules(self) -> list[str]:
        """The plugin modules of the package (shared and ``_`` helper modules excluded), sorted, unimported."""
        package = importlib.import_module(self.package)
        return sorted(
            info.name
            for info in pkgutil.iter_modules(package.__path__)
            if info.name not in SHARED_MODULES and not info.name.startswith("_")
        )

    def names(self) -> list[str]:
        """Every plugin name, sorted (imports every plugin module)."""
        for module in self.modules():
            importlib.import_module(f"{self.package}.{module}")
        return sorted(self._plugins)

    def get(self, name: str) -> Plugin:
        """The plugin ``name``, importing its module alone; ConfigError listing the valid names if there is none."""
        if name not in self._plugins:
            owners = [m for m in self.modules() if name == m or name.startswith(f"{m}_")]
            if owners:
                importlib.import_module(f"{self.package}.{max(owners, key=len)}")
            if name not in self._plugins:
                raise ConfigError(
                    f"params '{self.param}': unknown {self.kind} {name!r}; valid {self.plural} are {self.names()}"
                )
        return self._plugins[name]

    def all(self) -> dict[str, Plugin]:
        """Every plugin (imports them all: for the params schema and listings, never for a run)."""
        return {name: self.get(name) for name in self.names()}
