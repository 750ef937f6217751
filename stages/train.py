"""DVC stage train: the chosen adapter trained on the cached inputs -> models/model.safetensors (best by
val abs_rel), metrics/train.json, plots/train_curves.csv. A killed run resumes from its state file."""

from common import run

from depthcore.run import train_model


def main(stage):
    summary = train_model(stage.params, stage.paths, resume_key=stage.key)
    print(f"wrote {stage.paths.model} (best epoch {summary['best_epoch']}, val abs_rel {summary['val_abs_rel']:.4f})")


if __name__ == "__main__":
    run(main)
