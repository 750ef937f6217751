"""DVC stage train_inputs: what a training run depends on -> data/train_inputs.json: the DVC hashes of
the artifacts the chosen adapter and loss read, and the settings in effect (after the training preset).
train and evaluate depend on this file instead of on every store and param, so an artifact or a setting
the run does not use (SAM segments for an adapter without segments, ssl.* for a supervised loss, another
adapter's section, train.* values a published preset overrides) never re-runs them."""

from common import dependency_hashes, run

from depthcore.inputs import needed_inputs, run_settings
from depthcore.io import write_json_atomic


def main(stage):
    hashes = dependency_hashes(required=True) or {}  # {} when run by hand, outside DVC
    inputs = {str(path): hashes.get(str(path)) for path in needed_inputs(stage.params, stage.paths)}
    write_json_atomic(stage.paths.train_inputs, {"inputs": inputs, "settings": run_settings(stage.params)})
    print(f"{stage.params.adapter} with {stage.params.loss} reads {sorted(inputs)}")


if __name__ == "__main__":
    run(main)
