"""DVC stage zeroshot: DepthCLIP depth from the cached layer4 features and the head artifact ->
data/predictions/zeroshot.zarr, metrics/zeroshot.json (test split), plots/zeroshot.png."""

from common import run

from depthcore.zeroshot import run_zeroshot


def main(stage):
    run_zeroshot(stage.paths, stage.params.eval, key=stage.key)


if __name__ == "__main__":
    run(main)
