"""Loading a fetched backbone: the frozen network a ``fetch_backbone`` folder describes (its manifest and weights
file), without the fetching code, so that training and evaluation with live features (params ``features: live``)
can build the backbone without depending on the download and conversion-on-download code of
:mod:`depthcore.weights.backbone` (which re-exports these names)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from depthcore.models.backbones.zoo.registry import BACKBONES
from depthcore.weights.convert import PAPER_BACKBONE, state_dict_of
from depthcore.weights.manifest import read_manifest, weights_file

OPTIONS = "options"  # backbone.json / manifest: a backbone's settings besides pretrained, init_seed and layers


def manifest_backbone(manifest: dict[str, Any]) -> str:
    """The backbone a weights manifest is for (folders written before the zoo: the paper's)."""
    return manifest.get("backbone", PAPER_BACKBONE)


def load_backbone(weights_dir: Path | str):
    """The frozen backbone that the fetch_backbone folder ``weights_dir`` describes, on the CPU: for clip_rn50 the
    :class:`~depthcore.models.backbones.clip.ClipBackbone` (as before the zoo), otherwise the zoo's
    :class:`~depthcore.models.backbones.zoo.base.FrozenBackbone`."""
    manifest = read_manifest(weights_dir, stage="fetch_backbone")
    name = manifest_backbone(manifest)
    if name == PAPER_BACKBONE:
        from depthcore.weights.clip import load_clip_backbone

        return load_clip_backbone(weights_dir)
    path = weights_file(weights_dir, manifest, stage="fetch_backbone")
    state = None if path is None else state_dict_of(name, path)
    cfg = SimpleNamespace(
        init_seed=manifest.get("init_seed", 0), pretrained=manifest["pretrained"], **manifest.get(OPTIONS, {})
    )
    return BACKBONES.get(name).build(cfg=cfg, state_dict=state)
