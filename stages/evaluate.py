"""DVC stage evaluate: the checkpoint on the test split with the shared protocol -> data/predictions/model.zarr,
metrics/eval.json, metrics/eval_per_image.csv, plots/eval.png."""

from common import run

from depthcore.run import evaluate_checkpoint


def main(stage):
    evaluate_checkpoint(stage.params, stage.paths)


if __name__ == "__main__":
    run(main)
