"""DVC stage pairs: a second view for every image (ssl.pairs: dataset | homography | reproject) ->
data/prepared/pairs.zarr. Only ssl training reads it (through train_inputs)."""

from common import run

from depthcore.data.pairs import write_pairs


def main(stage):
    print(f"wrote {write_pairs(stage.params.ssl, stage.paths.dataset, stage.paths.pairs, key=stage.key)}")


if __name__ == "__main__":
    run(main)
