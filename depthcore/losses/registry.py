"""Losses by name: each loss is the module ``<name>.py`` of this package, which registers its settings class
(``losses.<name>``) and builder with ``@register("<name>", config=...)`` (see :mod:`depthcore.registry`). A loss
is imported only when it is built; adding one touches its own file (plus ``params.yaml`` and docs/pipeline.md) only."""

from __future__ import annotations

from depthcore.registry import Registry

LOSSES = Registry("depthcore.losses", kind="loss", plural="losses", param="loss")
register = LOSSES.register


def build_loss(name: str, *, cfg, smoothness: float):
    """The loss ``name`` from its settings ``cfg`` (``losses.<name>``) and the train section's smoothness weight
    in effect (used by the losses that take it, see ``uses_train_smoothness``)."""
    return LOSSES.get(name).build(cfg=cfg, smoothness=smoothness)
