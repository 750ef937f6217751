"""DVC stage segments: dataset.zarr (+ SAM weights) -> data/features/segments.zarr and metrics/segments.json."""

from common import run

from depthcore.segments import run_segments


def main(stage):
    print(f"segments: {run_segments(stage.params, stage.paths, key=stage.key)['all']}")


if __name__ == "__main__":
    run(main)
