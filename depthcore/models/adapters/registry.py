"""Adapters by name. Each adapter module registers ``name -> (config class, builder)`` with
:func:`register`; every module of this package is imported here, so adding an adapter touches its own
file (plus ``params.yaml`` and the README) only."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from depthcore.errors import DepthcoreError
from depthcore.section import AdapterConfig

INFRASTRUCTURE = ("base", "registry")  # modules of this package that are not adapters


@dataclass(frozen=True)
class AdapterSpec:
    """A registered adapter: its settings class and ``build(cfg=..., context=...) -> DepthAdapter``."""

    config: type[AdapterConfig]
    build: Callable


ADAPTERS: dict[str, AdapterSpec] = {}


def register(name: str, *, config: type[AdapterConfig]) -> Callable[[Callable], Callable]:
    """Decorator of an adapter builder: ``@register("msa", config=MsaConfig)``."""

    def decorate(build: Callable) -> Callable:
        if name in ADAPTERS:
            raise RuntimeError(f"adapter {name!r} is registered twice")
        ADAPTERS[name] = AdapterSpec(config=config, build=build)
        return build

    return decorate


def build_adapter(name: str, *, cfg: AdapterConfig, context):
    """The adapter ``name`` built from its settings ``cfg`` (``adapters.<name>``) and the context."""
    if name not in ADAPTERS:
        raise DepthcoreError(f"params 'adapter': unknown adapter {name!r}; valid adapters are {list(ADAPTERS)}")
    return ADAPTERS[name].build(cfg=cfg, context=context)


def _import_adapter_modules() -> None:
    package = importlib.import_module(__name__.rpartition(".")[0])
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name not in INFRASTRUCTURE:
            importlib.import_module(f"{package.__name__}.{info.name}")


_import_adapter_modules()
