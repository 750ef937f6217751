"""DVC stage train_inputs: the DVC hashes of the artifacts the chosen adapter and loss read ->
data/train_inputs.json. train and evaluate depend on this file instead of on every store, so a store
the run does not read (e.g. SAM segments for an adapter without segments) never re-runs them."""

from common import dependency_hashes, run

from depthcore.inputs import needed_inputs
from depthcore.io import write_json_atomic


def main(stage):
    hashes = dependency_hashes() or {}
    needed = {str(path): hashes.get(str(path)) for path in needed_inputs(stage.params, stage.paths)}
    write_json_atomic(stage.paths.train_inputs, needed)
    print(f"{stage.params.adapter} with {stage.params.loss} reads {sorted(needed)}")


if __name__ == "__main__":
    run(main)
