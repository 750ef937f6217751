"""DVC stage evaluate: models/model.pt on the test split with the shared protocol.

Writes data/predictions/model.zarr (``depth`` (N, 480, 640) metres, test images filled, 0 elsewhere),
metrics/eval.json (test metrics, n_images and the settings that produced the model),
metrics/eval_per_image.csv and plots/eval.png (RGB | ground truth | zero-shot | this model).
"""

from common import run
from torch.utils.data import DataLoader

from depthcore.config import ConfigError, EvalConfig
from depthcore.data.store import open_store
from depthcore.data.training import TrainingDataset
from depthcore.device import default_device
from depthcore.download import sha256_of
from depthcore.evaluation import write_report
from depthcore.geometry import DEPTHCLIP_CROP
from depthcore.train import build_from_checkpoint, load_checkpoint, predict_to_store

DATASET = "data/prepared/dataset.zarr"
FEATURES = "data/features/clip.zarr"
SEGMENTS = "data/features/segments.zarr"
ZEROSHOT = "data/predictions/zeroshot.zarr"
CHECKPOINT = "models/model.pt"
PREDICTIONS = "data/predictions/model.zarr"
METRICS = "metrics/eval.json"
PER_IMAGE = "metrics/eval_per_image.csv"
FIGURE = "plots/eval.png"
SPLIT = "test"
BATCH_SIZE = 4
SETTINGS = ("adapter", "adapter_config", "loss", "seed", "train", "epoch")


def main(params):
    eval_cfg = EvalConfig.from_params(params.get("eval"), prefix="eval")
    adapter = params.get("adapter")
    if not isinstance(adapter, str):
        raise ConfigError(f"params 'adapter': expected an adapter name, got {adapter!r}")
    ckpt = load_checkpoint(CHECKPOINT)
    model = build_from_checkpoint(ckpt, adapter=adapter, features_attrs=open_store(FEATURES).attrs)
    stores = {"dataset": DATASET, "features": FEATURES, "segments": SEGMENTS, "zeroshot": ZEROSHOT}
    test_set = TrainingDataset(split=SPLIT, keys=model.batch_keys(), with_flipped=True, **stores)
    dataset = open_store(DATASET, required=("rgb", "depth_eval", "split", "scene"))

    device = default_device()
    predict_to_store(
        model.to(device),
        DataLoader(test_set, batch_size=BATCH_SIZE, shuffle=False),
        PREDICTIONS,
        n_images=int(dataset["depth_eval"].shape[0]),
        fingerprint={"checkpoint": sha256_of(CHECKPOINT), "split": SPLIT},
        attrs={"depth_unit": "m", "crop": list(DEPTHCLIP_CROP), "split": SPLIT, "predictor": ckpt["adapter"]},
        device=device,
    )
    preds = open_store(PREDICTIONS, required=("depth",))["depth"]
    write_report(
        preds,
        dataset,
        cfg=eval_cfg,
        metrics_path=METRICS,
        figure_path=FIGURE,
        figure_columns=[("DepthCLIP zero-shot", open_store(ZEROSHOT)["depth"]), (ckpt["adapter"], preds)],
        extra={"model": {key: ckpt[key] for key in SETTINGS}},
        per_image_path=PER_IMAGE,
        split=SPLIT,
    )


if __name__ == "__main__":
    run(main)
