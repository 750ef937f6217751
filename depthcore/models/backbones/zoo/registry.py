"""Backbones by name: each backbone is the module ``<name>.py`` of this package, which registers its settings class
and builder with ``@register("<name>", config=...)`` (see :mod:`depthcore.registry`). A backbone is imported only
when it is built, so a features stage depends on its own backbone's code, not on the others'."""

from __future__ import annotations

import importlib

from depthcore.registry import Registry

BACKBONES = Registry("depthcore.models.backbones.zoo", kind="backbone", plural="backbones", param="backbone")
register = BACKBONES.register


def build_backbone(name: str, *, cfg, state_dict=None, clip=None):
    """The frozen backbone ``name`` on the CPU, float32: ``cfg`` its settings (``backbones.<name>``; the empty
    settings for ``clip_rn50``, whose settings are the ``clip`` section, given as ``clip``), ``state_dict`` its
    weights (None: seeded informative random weights from the settings' ``init_seed``). ConfigError listing the
    valid names for an unknown ``name``."""
    return BACKBONES.get(name).build(cfg=cfg, state_dict=state_dict, clip=clip)


def backbone_facts(name: str):
    """The :class:`~depthcore.models.backbones.zoo.base.BackboneFacts` of backbone ``name`` (its module's ``FACTS``:
    layer names, class token, text tower, zero-shot layer), without building it; ConfigError for an unknown name."""
    BACKBONES.get(name)
    return importlib.import_module(f"{BACKBONES.package}.{name}").FACTS
