"""Adapters by name: ``build_adapter(name, cfg=AdaptersConfig, context=AdapterContext)``."""

from __future__ import annotations

from collections.abc import Callable

from depthcore.config import ADAPTER_NAMES, AdaptersConfig, ConfigError
from depthcore.models.adapters.base import AdapterContext, DepthAdapter
from depthcore.models.adapters.clip_adapter import build_clip_adapter
from depthcore.models.adapters.coarse_refine import build_coarse_refine
from depthcore.models.adapters.eigen import build_eigen
from depthcore.models.adapters.msa import build_msa

ADAPTERS: dict[str, Callable[..., DepthAdapter]] = {
    "clip_adapter": build_clip_adapter,
    "coarse_refine": build_coarse_refine,
    "eigen": build_eigen,
    "msa": build_msa,
}
if tuple(ADAPTERS) != ADAPTER_NAMES:  # the config validates names against ADAPTER_NAMES
    raise RuntimeError(f"adapter registry {list(ADAPTERS)} and config.ADAPTER_NAMES {ADAPTER_NAMES} disagree")


def adapter_names() -> list[str]:
    """Names accepted by :func:`build_adapter`."""
    return list(ADAPTERS)


def build_adapter(name: str, *, cfg: AdaptersConfig, context: AdapterContext) -> DepthAdapter:
    """The adapter ``name`` with its settings ``cfg.<name>``; ConfigError listing valid names if unknown."""
    if name not in ADAPTERS:
        raise ConfigError(f"params 'adapter': unknown adapter {name!r}; valid adapters are {adapter_names()}")
    return ADAPTERS[name](cfg=getattr(cfg, name), context=context)
