"""DVC stage fetch_clip: the CLIP weights clip.pretrained names into data/weights/clip/ (+ weights.json)."""

from common import run

from depthcore.models.clip_weights import fetch_clip_weights


def main(stage):
    print(f"ready: {fetch_clip_weights(stage.params.clip, stage.paths.clip_weights)}")


if __name__ == "__main__":
    run(main)
