"""DVC stage clip_features: dataset.zarr -> data/features/clip.zarr (frozen CLIP, image + mirror image)."""

from common import run

from depthcore.config import ClipConfig
from depthcore.features import extract_clip_features
from depthcore.models.clip_backbone import build_clip_backbone, weights_sha256

DATASET = "data/prepared/dataset.zarr"
WEIGHTS_DIR = "data/weights"
OUT = "data/features/clip.zarr"


def main(params):
    cfg = ClipConfig.from_params(params.get("clip"), prefix="clip")
    backbone = build_clip_backbone(cfg=cfg, weights_dir=WEIGHTS_DIR)
    sha = weights_sha256(cfg, WEIGHTS_DIR)
    print(f"wrote {extract_clip_features(DATASET, OUT, backbone=backbone, cfg=cfg, weights_sha256=sha)}")


if __name__ == "__main__":
    run(main)
