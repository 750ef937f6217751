"""DVC stage train: an adapter trained on the cached features -> models/model.pt (best by val abs_rel).

Also writes plots/train_curves.csv (one row per epoch) and metrics/train.json (best epoch, val
metrics). A run killed mid-way resumes from models/last.pt (not a DVC output) on the next run.
"""

from common import run

from depthcore.config import (
    AdaptersConfig,
    ClipConfig,
    ConfigError,
    DepthclipConfig,
    EvalConfig,
    SegmentsConfig,
    TrainConfig,
    check_training_configs,
)
from depthcore.data.store import open_store, write_json_atomic
from depthcore.data.training import TrainingDataset
from depthcore.features import check_clip_features
from depthcore.losses import build_loss
from depthcore.models.adapters import AdapterContext, build_adapter
from depthcore.models.clip_backbone import build_clip_backbone, weights_sha256
from depthcore.models.depthclip import build_depthclip_head
from depthcore.train import feature_identity, seed_everything, train

DATASET = "data/prepared/dataset.zarr"
FEATURES = "data/features/clip.zarr"
SEGMENTS = "data/features/segments.zarr"
ZEROSHOT = "data/predictions/zeroshot.zarr"
WEIGHTS_DIR = "data/weights"
CHECKPOINT = "models/model.pt"
STATE = "models/last.pt"  # resume state; not a DVC output, deleted when training finishes
CURVES = "plots/train_curves.csv"
METRICS = "metrics/train.json"


def main(params):
    adapter, loss_name, seed = params.get("adapter"), params.get("loss"), params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"params 'seed': expected an integer, got {seed!r}")
    train_cfg = TrainConfig.from_params(params.get("train"), prefix="train")
    adapters_cfg = AdaptersConfig.from_params(params.get("adapters"), prefix="adapters")
    clip_cfg = ClipConfig.from_params(params.get("clip"), prefix="clip")
    head_cfg = DepthclipConfig.from_params(params.get("depthclip"), prefix="depthclip")
    segments_cfg = SegmentsConfig.from_params(params.get("segments"), prefix="segments")
    eval_cfg = EvalConfig.from_params(params.get("eval"), prefix="eval")
    check_training_configs(adapter=adapter, loss=loss_name, adapters=adapters_cfg, segments=segments_cfg, clip=clip_cfg)

    features = open_store(FEATURES)
    sha = weights_sha256(clip_cfg, WEIGHTS_DIR)
    check_clip_features(features, clip_cfg, weights_sha256=sha)
    head = None
    if adapter == "clip_adapter":  # text embeddings (and maskclip projections) become checkpoint buffers
        backbone = build_clip_backbone(cfg=clip_cfg, weights_dir=WEIGHTS_DIR)
        head = build_depthclip_head(backbone=backbone, cfg=head_cfg)
        del backbone
    context = AdapterContext.from_features(features.attrs, head=head)
    seed_everything(seed)
    model = build_adapter(adapter, cfg=adapters_cfg, context=context)
    loss_fn = build_loss(loss_name)
    check_clip_features(features, clip_cfg, weights_sha256=sha, layers=model.clip_layers)

    stores = {"dataset": DATASET, "features": FEATURES, "segments": SEGMENTS, "zeroshot": ZEROSHOT}
    keys = model.batch_keys() + tuple(loss_fn.fields)
    flip = "random" if train_cfg.flip else "none"
    train_set = TrainingDataset(split="train", keys=keys, flip=flip, seed=seed, **stores)
    val_set = TrainingDataset(split="val", keys=model.batch_keys(), with_flipped=True, **stores)
    dataset = open_store(DATASET, required=("depth_eval",))
    describe = {
        "adapter": adapter,
        "adapter_config": adapters_cfg.get(adapter).to_dict(),
        "loss": loss_name,
        "clip_layers": list(model.clip_layers),
        "batch_keys": list(model.batch_keys()),
        "context": context.describe(),
        "features": feature_identity(features.attrs, model.clip_layers),
        "inputs": {  # for the resume fingerprint only: a changed input means a fresh start
            "dataset": dict(dataset.attrs),
            "segments": dict(open_store(SEGMENTS).attrs) if "segments" in keys else None,
            "zeroshot": dict(open_store(ZEROSHOT).attrs) if "zeroshot" in keys else None,
        },
    }
    print(
        f"training {adapter} ({sum(p.numel() for p in model.parameters() if p.requires_grad)} parameters) with "
        f"{loss_name} on {len(train_set)} images, validating on {len(val_set)}"
    )
    summary = train(
        model=model,
        loss_fn=loss_fn,
        train_set=train_set,
        val_set=val_set,
        gt_depth=dataset["depth_eval"],
        cfg=train_cfg,
        eval_cfg=eval_cfg,
        seed=seed,
        describe=describe,
        checkpoint=CHECKPOINT,
        state=STATE,
        curves=CURVES,
    )
    write_json_atomic(METRICS, {"adapter": adapter, "loss": loss_name, **summary})
    print(f"wrote {CHECKPOINT} (best epoch {summary['best_epoch']}, val abs_rel {summary['val_abs_rel']:.4f})")


if __name__ == "__main__":
    run(main)
