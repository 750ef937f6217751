"""DVC stage fetch_backbone: the weights of the selected backbone (backbone.json; for clip_rn50 the CLIP weights
clip.pretrained names) into data/weights/backbone/ (+ weights.json); releases are also kept in
data/weights/downloads/."""

from common import run

from depthcore.weights.backbone import fetch_backbone_weights, read_selected


def main(stage):
    paths = stage.paths
    manifest = fetch_backbone_weights(
        read_selected(paths.backbone_settings),
        paths.backbone_weights,
        local_dir=paths.local_backbone_weights,
        downloads=paths.weights_downloads,
    )
    print(f"ready: {manifest}")


if __name__ == "__main__":
    run(main)
