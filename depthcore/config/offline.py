"""The offline configuration, defined once: what runs without network, and the demo budget of
``make repro-offline``. The Makefile, the tests and the error a failed download prints all take it from here.

``python -m depthcore.config.offline`` prints the demo as ``dvc exp run`` arguments (``-S key=value ...``);
``--minimal`` prints the offline switches alone.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

# No network: rendered rooms, seeded random weights for CLIP, SAM and every backbone of the zoo, the cheap
# felzenszwalb segmenter (SAM with random weights finds no masks, at ~30 s per image on a CPU) and the rendered
# rooms' own second views.
OFFLINE: dict[str, Any] = {
    "data.source": "synthetic",
    "clip.pretrained": "none",
    "backbones.clip_vitb16.pretrained": "none",
    "backbones.dinov2_vits14.pretrained": "none",
    "backbones.dinov2_vitb14.pretrained": "none",
    "backbones.sam_vitb.pretrained": "none",
    "backbones.dinov3_vits16.pretrained": "none",
    "backbones.dinov3_vitb16.pretrained": "none",
    "backbones.dinov3_vitl16.pretrained": "none",
    "backbones.cradiov3_vitb16.pretrained": "none",
    "backbones.siglip2_vitb16.pretrained": "none",
    "backbones.pe_core_b16.pretrained": "none",
    "sam.pretrained": "none",
    "segments.method": "felzenszwalb",
    "pairs.method": "dataset",
    "paper.field_source": "synthetic",
}
# make repro-offline: enough rendered rooms and training for the default model (the published MSA at narrow
# widths) to beat the constant train-mean depth clearly (tests/test_learning.py measures it over seeds), in a
# few minutes on 2 CPU cores.
DEMO: dict[str, Any] = OFFLINE | {
    "data.synthetic.images": 48,
    "data.synthetic.views_per_room": 2,
    "train.preset": "custom",
    "train.optimizer": "sgd",
    "train.lr": 0.05,
    "train.schedule": "cosine",
    "train.epochs": 10,
    "train.batch_size": 4,  # BatchNorm's running statistics need more than 2 images a batch
    "train.select": "last",  # 4 val images select noisily; the val loss is still plotted every epoch
    "train.color_jitter": 0.0,  # the rooms' strongest depth cue is the camera lamp's brightness, which jitter scales
    "train.flip": "random",  # one pass per image: half the published flip average's cost, for a demo on a CPU
    "adapters.msa.widths": [64, 64, 32, 32, 16, 16],
}


def dvc_set_args(overrides: dict[str, Any]) -> list[str]:
    """``overrides`` as ``dvc exp run`` arguments: ``["-S", "key=value", ...]`` (values in JSON, which YAML reads)."""
    args = []
    for key, value in overrides.items():
        args += ["-S", f"{key}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}"]
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minimal", action="store_true", help="the offline switches without the demo budget")
    args = parser.parse_args()
    print(" ".join(dvc_set_args(OFFLINE if args.minimal else DEMO)))


if __name__ == "__main__":
    main()
