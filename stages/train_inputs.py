"""DVC stage train_inputs: what a training run depends on -> data/train_inputs.json: the DVC hashes of the
artifacts the chosen adapter and loss read, the params its output is a function of, and the content hashes
of the chosen adapter's and loss's code. train and evaluate depend on this file instead of on every store,
param and plugin, so an artifact, a setting or a plugin the run does not use never re-runs them."""

from common import run

from depthcore.io import write_json_atomic
from depthcore.pipeline.dvc import dependency_hashes
from depthcore.training.inputs import needed_inputs, run_settings


def main(stage):
    hashes = dependency_hashes(required=True) or {}  # {} when run by hand, outside DVC
    inputs = {str(path): hashes.get(str(path)) for path in needed_inputs(stage.params, stage.paths)}
    write_json_atomic(stage.paths.train_inputs, {"inputs": inputs} | run_settings(stage.params))
    print(f"{stage.params.adapter} with {stage.params.loss_name} reads {sorted(inputs)}")


if __name__ == "__main__":
    run(main)
