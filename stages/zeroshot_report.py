"""DVC stage zeroshot_report: the zero-shot test metrics (with the constant train-mean depth beside them)
and figure -> metrics/zeroshot.json, plots/zeroshot.png."""

from common import run

from depthcore.evaluation.evaluate import zeroshot_report


def main(stage):
    zeroshot_report(stage.params, stage.paths)


if __name__ == "__main__":
    run(main)
