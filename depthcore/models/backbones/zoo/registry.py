"""Backbones by name: a backbone is registered by its module ``<name>.py`` of this package, or a family of
variants by the family's module (``dinov2.py``: ``dinov2_vits14``, ``dinov2_vitb14``), each with its settings class,
builder and :class:`~depthcore.models.backbones.zoo.base.BackboneSpec` (see :mod:`depthcore.registry`). A backbone
is imported only when it is asked for, so a features stage depends on its own backbone's code, not on the others'."""

from __future__ import annotations

from depthcore.registry import Registry

BACKBONES = Registry("depthcore.models.backbones.zoo", kind="backbone", plural="backbones", param="backbone")


def register(name: str, *, config: type, spec):
    """Decorator of backbone ``name``'s builder: ``config`` its settings class (``backbones.<name>``), ``spec``
    its :class:`~depthcore.models.backbones.zoo.base.BackboneSpec`."""
    return BACKBONES.register(name, config=config, spec=spec)


def build_backbone(name: str, *, cfg, state_dict=None, clip=None):
    """The frozen backbone ``name`` on the CPU, float32: ``cfg`` its settings (``backbones.<name>``; the empty
    settings for ``clip_rn50``, whose settings are the ``clip`` section, given as ``clip``), ``state_dict`` its
    weights (None: seeded informative random weights from the settings' ``init_seed``). ConfigError listing the
    valid names for an unknown ``name``."""
    return BACKBONES.get(name).build(cfg=cfg, state_dict=state_dict, clip=clip)


def backbone_spec(name: str):
    """The :class:`~depthcore.models.backbones.zoo.base.BackboneSpec` of backbone ``name`` (model, facts, releases,
    conversion), without building it; ConfigError listing the valid names for an unknown ``name``."""
    return BACKBONES.get(name).spec


def backbone_facts(name: str):
    """The :class:`~depthcore.models.backbones.zoo.base.BackboneFacts` of backbone ``name`` (layer names, class
    token, text tower, zero-shot layer), without building it; ConfigError for an unknown name."""
    return backbone_spec(name).facts
