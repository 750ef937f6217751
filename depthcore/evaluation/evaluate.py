"""The reporting stages: ``evaluate`` (a trained checkpoint on the test split) and ``zeroshot_report`` (the
zero-shot predictions), each with the one protocol, the constant train-mean baseline beside it, and a figure."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import DataLoader

from depthcore.config.paths import Paths
from depthcore.data.batch import loader_keys, store_paths
from depthcore.data.samples import TrainingDataset
from depthcore.data.splits import read_split, split_indices
from depthcore.data.store import ResumableStore, Store
from depthcore.device import default_device, loader_workers
from depthcore.evaluation.report import write_baseline_report, write_report
from depthcore.features.live import LiveFeatures
from depthcore.geometry.frame import DEPTHCLIP_CROP, EVAL_FRAMES, NYU_HEIGHT, NYU_WIDTH, crop_shape
from depthcore.models.predict import iter_predictions
from depthcore.training.checkpoint import build_from_checkpoint, checkpoint_config, load_checkpoint
from depthcore.training.settings import is_live


def predict_to_store(
    model: nn.Module,
    loader: DataLoader,
    out: Path | str,
    *,
    n_images: int,
    attrs: Mapping[str, Any],
    amp: bool = False,
    progress: bool = True,
    features=None,
    crop: tuple[int, int, int, int] = DEPTHCLIP_CROP,
) -> Path:
    """Write ``out`` with ``depth`` (n_images, 480, 640) float32 metres: ``loader``'s images filled (inside
    ``crop``, the crop the loader reads), 0 elsewhere (atomic, like every store; quick, so never resumed). The
    model runs on the device its weights are on, under float16 autocast with ``amp`` on CUDA; ``features``: live
    features computing the batches' backbone layers."""
    device = next(model.parameters()).device
    store = ResumableStore(out, key=None, resume=False)
    depth = store.array("depth", (n_images, NYU_HEIGHT, NYU_WIDTH), np.float32)
    unpredicted = set(range(n_images))
    predictions = iter_predictions(
        model, loader, device=device, amp=amp, progress=progress, features=features, crop=crop
    )
    for indices, preds in predictions:
        for index, pred in zip(indices, preds, strict=True):
            depth[int(index)] = pred
            unpredicted.discard(int(index))
    for index in sorted(unpredicted):
        depth[index] = 0.0
    store.mark_done(n_images)
    return store.commit(attrs)


def evaluate_checkpoint(params, paths: Paths, *, device=None, progress: bool = True) -> dict[str, Any]:
    """The evaluate stage: predict the test images with the checkpoint on ``device`` (default: a GPU when
    available) and write the report. The precision is the one its validation ran at: float16 autocast on CUDA
    when the checkpoint was trained with ``train.amp``. ``eval.frame``: predict on the DepthCLIP crop (the
    paper's; 0 outside it) or, for a probe on live features, on the whole frame (the references')."""
    meta, state = load_checkpoint(paths.model)
    keys = checkpoint_config(meta).batch_keys()
    live = LiveFeatures.from_weights(paths.backbone_weights, keys) if is_live(params) else None
    features = (live.attrs if live else Store(paths.features).attrs) if meta["features"]["layers"] else None
    crop = EVAL_FRAMES[params.eval.frame]  # live: the fixed crop too, so both routes predict the same; or the frame
    size = None if crop == DEPTHCLIP_CROP else crop_shape(crop)
    model = build_from_checkpoint(meta, state, adapter=params.adapter, features_attrs=features, image_size=size)
    dataset = Store(paths.dataset, required=("rgb", "depth", "depth_eval", "split", "scene"))
    test_set = TrainingDataset(
        stores=store_paths(paths),
        indices=split_indices(dataset.read("split"), "test"),
        keys=loader_keys(model.batch_keys(), live=live is not None),
        with_flipped=True,
        crop=crop,
    )
    device = default_device(device)
    workers = loader_workers(params.runtime.num_workers)
    loader = DataLoader(
        test_set,
        batch_size=params.runtime.eval_batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    predict_to_store(
        model.to(device),
        loader,
        paths.predictions,
        n_images=dataset.shape("depth_eval")[0],
        attrs={"depth_unit": "m", "crop": list(crop), "split": "test", "predictor": meta["adapter"]},
        amp=bool(meta.get("train", {}).get("amp", False)) and device.type == "cuda",
        progress=progress,
        features=live,
        crop=crop,
    )
    return _report(params, paths, Store(paths.predictions, required=("depth",)), meta["adapter"], dataset=dataset)


def zeroshot_report(params, paths: Paths) -> dict[str, Any]:
    """The zeroshot_report stage: the zero-shot predictions' test metrics and figure. For a backbone without a
    text tower (a zeroshot store without depth) the metrics hold the constant train-mean depth's alone, and the
    figure the images and their ground truth."""
    predictions = Store(paths.zeroshot)
    if predictions.attrs.get("predictor", "depthclip") is None:
        dataset = Store(paths.dataset, required=("rgb", "depth", "depth_eval", "split", "scene"))
        print(f"{predictions.attrs['reason']}: metrics/zeroshot.json holds the constant train-mean depth's alone")
        return write_baseline_report(
            dataset,
            read_split(paths.split, dataset.shape("rgb")[0]),
            cfg=params.eval,
            metrics_path=paths.zeroshot_metrics,
            figure_path=paths.zeroshot_figure,
        )
    return _report(params, paths, Store(paths.zeroshot, required=("depth",)), "DepthCLIP zero-shot", zeroshot=True)


def _report(params, paths: Paths, predictions: Store, label: str, *, dataset=None, zeroshot=False) -> dict[str, Any]:
    """The report of ``predictions`` (the zero-shot ones or the model's) into the stage's metrics and figure."""
    dataset = dataset or Store(paths.dataset, required=("rgb", "depth", "depth_eval", "split", "scene"))
    return write_report(
        predictions,
        dataset,
        read_split(paths.split, dataset.shape("rgb")[0]),
        cfg=params.eval,
        metrics_path=paths.zeroshot_metrics if zeroshot else paths.eval_metrics,
        figure_path=paths.zeroshot_figure if zeroshot else paths.eval_figure,
        figure_columns=[(label, predictions)],
        per_image_path=None if zeroshot else paths.eval_per_image,
    )
