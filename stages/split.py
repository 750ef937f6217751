"""DVC stage split: whole training scenes of dataset.zarr moved to val -> data/prepared/split.json."""

from common import run

from depthcore.data.splits import write_validation_split


def main(stage):
    data, paths = stage.params.data, stage.paths
    out = write_validation_split(paths.dataset, paths.split, val_fraction=data.val_fraction, seed=data.split_seed)
    print(f"wrote {out}")


if __name__ == "__main__":
    run(main)
