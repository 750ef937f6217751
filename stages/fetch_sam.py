"""DVC stage fetch_sam: the SAM weights sam.pretrained names into data/weights/sam/ (+ weights.json)."""

from common import run

from depthcore.weights.fetch_sam import fetch_sam_weights


def main(stage):
    paths = stage.paths
    print(f"ready: {fetch_sam_weights(stage.params.sam, paths.sam_weights, local_dir=paths.local_sam_weights)}")


if __name__ == "__main__":
    run(main)
