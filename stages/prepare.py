"""DVC stage prepare: data/raw/ -> data/prepared/dataset.zarr (one layout for every source)."""

from common import run

from depthcore.data.prepare import prepare_dataset


def main(stage):
    paths = stage.paths
    print(f"wrote {prepare_dataset(stage.params.data.source, paths.raw, paths.dataset, key=stage.key)}")


if __name__ == "__main__":
    run(main)
