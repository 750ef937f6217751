"""Adapters by name: each adapter is the module ``<name>.py`` of this package, which registers its settings
class and builder with ``@register("<name>", config=...)`` (see :mod:`depthcore.registry`). An adapter is
imported only when it is built, so a training run depends on its own adapter's code, not on the others'.
Adding an adapter touches its own file (plus ``params.yaml`` and docs/pipeline.md) only."""

from __future__ import annotations

from depthcore.registry import Registry

ADAPTERS = Registry("depthcore.models.adapters", kind="adapter", plural="adapters", param="adapter")
register = ADAPTERS.register


def build_adapter(name: str, *, cfg, context):
    """The adapter ``name`` built from its settings ``cfg`` (``adapters.<name>``) and the context."""
    return ADAPTERS.get(name).build(cfg=cfg, context=context)
