"""DVC stage segments_report: the segment maps summarised -> metrics/segments.json."""

from common import run

from depthcore.evaluation.segments import write_segments_report


def main(stage):
    paths = stage.paths
    print(f"segments: {write_segments_report(paths.segments, paths.dataset, paths.segments_metrics)['all']}")


if __name__ == "__main__":
    run(main)
