"""DVC stage segments: dataset.zarr (+ SAM weights) -> data/features/segments.zarr."""

from common import run

from depthcore.features.segments import write_segments


def main(stage):
    p, paths = stage.params, stage.paths
    out = write_segments(
        p.segments,
        p.sam,
        paths.dataset,
        paths.segments,
        weights_dir=paths.sam_weights,
        key=stage.key,
        points_per_batch=p.runtime.sam_points_per_batch,
        device=stage.device,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    run(main)
