"""DVC stage backbone: the selected backbone's settings and code hashes -> data/features/backbone.json. The weights
and feature stages depend on this file, so another backbone's settings or code never re-run them."""

from common import run

from depthcore.weights.backbone import describe, write_selected


def main(stage):
    print(f"backbone: {describe(write_selected(stage.params, stage.paths.backbone_settings))}")


if __name__ == "__main__":
    run(main)
