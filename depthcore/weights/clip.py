"""Reading a ``fetch_backbone`` folder back: the state dict it holds and the frozen backbone it describes
(the folder is written by :mod:`depthcore.weights.fetch_clip`; everything downstream reads its manifest,
never ``clip.pretrained`` itself)."""

from __future__ import annotations

from pathlib import Path

from depthcore.models.backbones.clip import ClipBackbone, build_clip_backbone
from depthcore.weights.convert import PAPER_BACKBONE, state_dict_of
from depthcore.weights.manifest import read_manifest, weights_file


def load_clip_backbone(weights_dir: Path | str) -> ClipBackbone:
    """The backbone described by the ``fetch_backbone`` manifest in ``weights_dir``."""
    manifest = read_manifest(weights_dir, stage="fetch_backbone")
    path = weights_file(weights_dir, manifest, stage="fetch_backbone")
    if path is None:
        return build_clip_backbone(model=manifest["model"], init_seed=manifest["init_seed"])
    state = state_dict_of(PAPER_BACKBONE, path)
    return build_clip_backbone(model=manifest["model"], state_dict=state, source=str(path))
