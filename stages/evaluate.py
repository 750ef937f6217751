"""DVC stage evaluate: the checkpoint on the test split with the shared protocol -> data/predictions/model.zarr,
metrics/eval.json (with the constant train-mean depth beside it), metrics/eval_per_image.csv, plots/eval.png."""

from common import run

from depthcore.evaluation.evaluate import evaluate_checkpoint


def main(stage):
    evaluate_checkpoint(stage.params, stage.paths, device=stage.device)


if __name__ == "__main__":
    run(main)
