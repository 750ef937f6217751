"""DVC stage fetch_clip: the CLIP weights clip.pretrained names into data/weights/clip/ (+ weights.json)."""

from common import run

from depthcore.weights.fetch_clip import fetch_clip_weights


def main(stage):
    paths = stage.paths
    print(f"ready: {fetch_clip_weights(stage.params.clip, paths.clip_weights, local_dir=paths.local_clip_weights)}")


if __name__ == "__main__":
    run(main)
