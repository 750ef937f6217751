"""DVC stage zeroshot: DepthCLIP zero-shot depth of every image from the cached layer4 ->
data/predictions/zeroshot.zarr."""

from common import run

from depthcore.features.zeroshot import run_zeroshot


def main(stage):
    print(f"wrote {run_zeroshot(stage.paths, key=stage.key, batch_size=stage.params.runtime.eval_batch_size)}")


if __name__ == "__main__":
    run(main)
