"""DVC stage evaluate: models/model.pt on the test split with the shared protocol.

Writes data/predictions/model.zarr (``depth`` (N, 480, 640) metres, test images filled, 0 elsewhere),
metrics/eval.json (test metrics, n_images and the settings that produced the model),
metrics/eval_per_image.csv and plots/eval.png (RGB | ground truth | zero-shot | this model).
"""

import csv
import hashlib
import os

import numpy as np
import torch
from common import run
from torch.utils.data import DataLoader

from depthcore.config import ConfigError, EvalConfig
from depthcore.data.store import ResumableStore, open_store, write_json_atomic
from depthcore.data.training import TrainingDataset
from depthcore.evaluation import evaluate_predictions, split_indices
from depthcore.geometry import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_WIDTH
from depthcore.train import build_from_checkpoint, evaluate_model, load_checkpoint
from depthcore.viz import save_depth_figure

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

    n = int(dataset["depth_eval"].shape[0])
    with open(CHECKPOINT, "rb") as fh:
        ckpt_sha = hashlib.sha256(fh.read()).hexdigest()
    store = ResumableStore(PREDICTIONS, fingerprint={"checkpoint": ckpt_sha, "n": n, "split": SPLIT})
    depth = store.array("depth", (n, NYU_HEIGHT, NYU_WIDTH), np.float32)

    def keep(indices, preds):
        for index, pred in zip(indices, preds, strict=True):
            depth[int(index)] = pred

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    loader = DataLoader(test_set, batch_size=BATCH_SIZE, shuffle=False)
    evaluate_model(
        model, loader, dataset["depth_eval"], eval_cfg=eval_cfg, device=device, on_prediction=keep, progress=True
    )
    store.mark_done(n)
    store.commit({"depth_unit": "m", "crop": list(DEPTHCLIP_CROP), "split": SPLIT, "predictor": ckpt["adapter"]})

    preds = open_store(PREDICTIONS, required=("depth",))["depth"]
    metrics, rows = evaluate_predictions(preds, dataset, cfg=eval_cfg, split=SPLIT)
    settings = {key: ckpt[key] for key in ("adapter", "adapter_config", "loss", "seed", "train", "epoch")}
    write_json_atomic(METRICS, {**metrics, "split": SPLIT, "model": settings})
    _write_rows(PER_IMAGE, rows)
    print(f"{SPLIT}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    shown = split_indices(dataset, SPLIT)[: max(eval_cfg.figure_images, 1)]
    save_depth_figure(
        FIGURE,
        rgb=dataset["rgb"].get_orthogonal_selection((shown,)),
        gt=dataset["depth_eval"].get_orthogonal_selection((shown,)),
        predictions=[
            ("DepthCLIP zero-shot", open_store(ZEROSHOT)["depth"].get_orthogonal_selection((shown,))),
            (ckpt["adapter"], preds.get_orthogonal_selection((shown,))),
        ],
        titles=[f"image {i}" for i in shown],
    )


def _write_rows(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


if __name__ == "__main__":
    run(main)
