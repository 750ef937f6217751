"""DVC stage fetch_weights: CLIP and SAM weights into data/weights/ (the only network access
besides fetch_data). With ``pretrained: none`` nothing is downloaded."""

from common import run
from depthcore.models.clip_backbone import fetch_clip_weights
from depthcore.models.sam import fetch_sam_weights

from depthcore.config import ClipConfig, SamConfig

WEIGHTS_DIR = "data/weights"


def main(params):
    clip_cfg = ClipConfig.from_params(params.get("clip"), prefix="clip")
    sam_cfg = SamConfig.from_params(params.get("sam"), prefix="sam")
    for name, path in (
        ("clip", fetch_clip_weights(clip_cfg, WEIGHTS_DIR)),
        ("sam", fetch_sam_weights(sam_cfg, WEIGHTS_DIR)),
    ):
        print(f"{name}: {path}")


if __name__ == "__main__":
    run(main)
