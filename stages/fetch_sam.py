"""DVC stage fetch_sam: the SAM weights sam.pretrained names into data/weights/sam/ (+ weights.json)."""

from common import run

from depthcore.models.sam import fetch_sam_weights


def main(stage):
    print(f"ready: {fetch_sam_weights(stage.params.sam, stage.paths.sam_weights)}")


if __name__ == "__main__":
    run(main)
