"""DVC stage pairs: a second view for every image (pairs.method: dataset | homography | reproject) ->
data/prepared/pairs.zarr. Only runs whose loss reads second views depend on it (through train_inputs)."""

from common import run

from depthcore.data.pairs import write_pairs


def main(stage):
    print(f"wrote {write_pairs(stage.params.pairs, stage.paths.dataset, stage.paths.pairs, key=stage.key)}")


if __name__ == "__main__":
    run(main)
