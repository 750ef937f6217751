"""What DINOv2 released for NYU depth: the backbones, the head files and their URLs, the blocks each head reads,
the depth range and the published figures (facebookresearch/dinov2 @ b8931f7bf91576930313be2c6d6af376033b35f0:
dinov2/hub/depthers.py, MODEL_CARD.md). Plain data, no torch: the ``depthcore`` command imports it."""

from __future__ import annotations

from dataclasses import dataclass

from depthcore.download import RemoteFile
from depthcore.errors import DepthcoreError

BASE_URL = "https://dl.fbaipublicfiles.com/dinov2"
MIN_DEPTH, MAX_DEPTH = 0.001, 10.0  # metres: the NYU heads' range (released configs; hub ``_get_depth_range``)
HEADS = ("linear", "linear4", "dpt")
# DINOv2 tests on the toolbox's NYU files, BTS's extraction of the official test set (cleinc/bts @ 8156117,
# utils/extract_official_train_test_set_from_mat.py): rgb_*.jpg keeps rows 7:474 and columns 7:632 of the frame
# (black elsewhere), sync_depth_*.png holds rawDepths in whole millimetres (x 1000, cast to uint16)
BTS_KEPT = (7, 474, 7, 632)  # (top, bottom, left, right) on the 480 x 640 frame
BTS_DEPTH_SCALE = 1000.0  # ground-truth units per metre in BTS's PNGs (the released configs' depth_scale)
NYU_FRAME = (480, 640)


@dataclass(frozen=True)
class Variant:
    """A DINOv2 backbone: its timm model, width, depth and the 0-based blocks its 4-layer heads read."""

    timm_model: str
    embed_dim: int
    depth: int
    four_layers: tuple[int, int, int, int]


VARIANTS = {  # dinov2/hub/depthers.py: out_index per arch; widths from MODEL_CARD.md
    "dinov2_vits14": Variant("vit_small_patch14_dinov2.lvd142m", 384, 12, (2, 5, 8, 11)),
    "dinov2_vitb14": Variant("vit_base_patch14_dinov2.lvd142m", 768, 12, (2, 5, 8, 11)),
    "dinov2_vitl14": Variant("vit_large_patch14_dinov2.lvd142m", 1024, 24, (4, 11, 17, 23)),
    "dinov2_vitg14": Variant("vit_giant_patch14_dinov2.lvd142m", 1536, 40, (9, 19, 29, 39)),
}
# NYU RMSE (m) of DINOv2's released lin. 4 heads, MODEL_CARD.md @ b8931f7 ("NYU-Depth v2, depth (RMSE), linear 4
# layers"): the figure `depthcore bridge dinov2 --head linear4` reproduces.
PUBLISHED_LIN4_RMSE = {"dinov2_vits14": 0.417, "dinov2_vitb14": 0.362, "dinov2_vitl14": 0.333, "dinov2_vitg14": 0.298}


class BridgeError(DepthcoreError, ValueError):
    """A head or backbone file that is not what the bridge expects, or settings that do not fit."""


def variant(backbone: str) -> Variant:
    if backbone not in VARIANTS:
        raise BridgeError(f"unknown DINOv2 backbone {backbone!r}; valid: {sorted(VARIANTS)}")
    return VARIANTS[backbone]


def check_head(head: str) -> str:
    if head not in HEADS:
        raise BridgeError(f"unknown DINOv2 head {head!r}; valid: {list(HEADS)}")
    return head


def head_blocks(backbone: str, head: str) -> tuple[int, ...]:
    """The 0-based blocks ``head`` reads on ``backbone`` (lin. 1: the last; lin. 4 and DPT: four)."""
    v = variant(backbone)
    return (v.depth - 1,) if check_head(head) == "linear" else v.four_layers


def head_remote(backbone: str, head: str) -> RemoteFile:
    """The released head file (no SHA-256 is published: the first download's hash is recorded and checked)."""
    variant(backbone)
    name = f"{backbone}_nyu_{check_head(head)}_head.pth"
    return RemoteFile(url=f"{BASE_URL}/{backbone}/{name}", filename=name)


def backbone_remote(backbone: str) -> RemoteFile:
    """Meta's released backbone ``<backbone>_pretrain.pth`` (no published SHA-256)."""
    variant(backbone)
    name = f"{backbone}_pretrain.pth"
    return RemoteFile(url=f"{BASE_URL}/{backbone}/{name}", filename=name)
