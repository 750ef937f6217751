"""DVC stage zeroshot: DepthCLIP depth from the cached layer4 features (CLIP's image tower is not run).

Writes data/predictions/zeroshot.zarr (every image), metrics/zeroshot.json (test split) and
plots/zeroshot.png (RGB | ground truth | zero-shot for the first test images).
"""

from common import run

from depthcore.config import ClipConfig, DepthclipConfig, EvalConfig
from depthcore.data.store import open_store
from depthcore.evaluation import write_report
from depthcore.features import check_clip_features
from depthcore.models.clip_backbone import build_clip_backbone, weights_sha256
from depthcore.models.depthclip import build_depthclip_head
from depthcore.zeroshot import predict_zeroshot

DATASET = "data/prepared/dataset.zarr"
FEATURES = "data/features/clip.zarr"
WEIGHTS_DIR = "data/weights"
OUT = "data/predictions/zeroshot.zarr"
METRICS = "metrics/zeroshot.json"
FIGURE = "plots/zeroshot.png"


def main(params):
    clip_cfg = ClipConfig.from_params(params.get("clip"), prefix="clip")
    head_cfg = DepthclipConfig.from_params(params.get("depthclip"), prefix="depthclip")
    eval_cfg = EvalConfig.from_params(params.get("eval"), prefix="eval")

    features = open_store(FEATURES, required=("layer4",))
    sha = weights_sha256(clip_cfg, WEIGHTS_DIR)
    check_clip_features(features, clip_cfg, weights_sha256=sha, layers=("layer4",))
    head = build_depthclip_head(backbone=build_clip_backbone(cfg=clip_cfg, weights_dir=WEIGHTS_DIR), cfg=head_cfg)
    fingerprint = {"depthclip": head_cfg.to_dict(), "model": clip_cfg.model, "weights_sha256": sha}
    predict_zeroshot(features, OUT, head=head, fingerprint=fingerprint)

    depth = open_store(OUT, required=("depth",))["depth"]
    write_report(
        depth,
        open_store(DATASET, required=("rgb", "depth_eval", "split", "scene")),
        cfg=eval_cfg,
        metrics_path=METRICS,
        figure_path=FIGURE,
        figure_columns=[("DepthCLIP zero-shot", depth)],
    )


if __name__ == "__main__":
    run(main)
