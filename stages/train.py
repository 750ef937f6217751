"""DVC stage train: the chosen adapter trained on the cached inputs, phase by phase -> models/model.safetensors
(lowest val loss, or the last epoch), metrics/train.json, plots/train_curves.csv. A killed run resumes."""

from common import run

from depthcore.training.run import train_model


def main(stage):
    summary = train_model(stage.params, stage.paths, resume_key=stage.key, device=stage.device)
    print(f"wrote {stage.paths.model} (kept epoch {summary['best_epoch']} of {summary['epochs']})")


if __name__ == "__main__":
    run(main)
