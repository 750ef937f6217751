"""Training: resume == uninterrupted, the learning test, bad input, and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
from depthcore.data.store import open_store
from depthcore.data.training import TrainingDataset
from depthcore.evaluation import evaluate_predictions
from depthcore.features import extract_clip_features
from depthcore.losses import build_loss
from depthcore.models.adapters import AdapterContext, build_adapter
from depthcore.models.clip_backbone import build_clip_backbone
from depthcore.models.depthclip import build_depthclip_head
from depthcore.train import (
    CheckpointError,
    TrainingError,
    build_from_checkpoint,
    evaluate_model,
    feature_identity,
    load_checkpoint,
    seed_everything,
    train,
)
from depthcore.zeroshot import predict_zeroshot

LAYERS = ["layer2", "layer3", "layer4"]
CLIP = {"pretrained": "none", "cache_layers": LAYERS, "batch_size": 6}
EVAL = EvalConfig()
SMALL_MSA = {"layers": LAYERS, "decoder_channels": 64, "rgb_channels": 8, "clip_init_weight": 0.0}


@pytest.fixture(scope="module")
def stores(synthetic_dataset, tmp_path_factory):
    """dataset.zarr + clip.zarr (random RN50, layers 2-4) + zeroshot.zarr of the 6-image synthetic set."""
    root = tmp_path_factory.mktemp("train_stores")
    cfg = ClipConfig.from_params(CLIP)
    backbone = build_clip_backbone(cfg=cfg, weights_dir=root)
    extract_clip_features(
        synthetic_dataset, root / "clip.zarr", backbone=backbone, cfg=cfg, weights_sha256=None, progress=False
    )
    head = build_depthclip_head(backbone=backbone, cfg=DepthclipConfig())
    predict_zeroshot(open_store(root / "clip.zarr"), root / "zeroshot.zarr", head=head, fingerprint={}, progress=False)
    return {"dataset": synthetic_dataset, "features": root / "clip.zarr", "zeroshot": root / "zeroshot.zarr"}


def setup(stores, adapter="msa", adapters=None, loss="l1", seed=0):
    features = open_store(stores["features"])
    context = AdapterContext.from_features(features.attrs)
    cfg = AdaptersConfig.from_params(adapters or {"msa": SMALL_MSA})
    seed_everything(seed)
    model = build_adapter(adapter, cfg=cfg, context=context)
    loss_fn = build_loss(loss)
    train_set = TrainingDataset(
        split="train", keys=model.batch_keys() + loss_fn.fields, flip="random", seed=seed, **stores
    )
    val_set = TrainingDataset(split="val", keys=model.batch_keys(), with_flipped=True, **stores)
    describe = {
        "adapter": adapter,
        "adapter_config": cfg.get(adapter).to_dict(),
        "loss": loss,
        "clip_layers": list(model.clip_layers),
        "context": context.describe(),
        "features": feature_identity(features.attrs, model.clip_layers),
    }
    kwargs = dict(
        model=model,
        loss_fn=loss_fn,
        train_set=train_set,
        val_set=val_set,
        gt_depth=open_store(stores["dataset"])["depth_eval"],
        eval_cfg=EVAL,
        seed=seed,
        describe=describe,
        progress=False,
    )
    return model, kwargs


def test_resume_gives_the_same_weights(stores, tmp_path):
    cfg = TrainConfig.from_params({"epochs": 2, "batch_size": 2, "lr": 1e-3})
    _, kwargs = setup(stores)
    train(**kwargs, cfg=cfg, checkpoint=tmp_path / "a.pt", state=tmp_path / "a_last.pt")

    def kill_after_first(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    _, kwargs = setup(stores)
    with pytest.raises(KeyboardInterrupt):
        train(
            **kwargs, cfg=cfg, checkpoint=tmp_path / "b.pt", state=tmp_path / "b_last.pt", on_epoch_end=kill_after_first
        )
    assert (tmp_path / "b_last.pt").exists() and not (tmp_path / "b.pt").exists()
    _, kwargs = setup(stores)  # a fresh process: new model, new optimizer
    train(**kwargs, cfg=cfg, checkpoint=tmp_path / "b.pt", state=tmp_path / "b_last.pt")
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    assert a["epoch"] == b["epoch"] and a["history"] == b["history"]
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], rtol=0, atol=0)
    assert not (tmp_path / "b_last.pt").exists()


def test_msa_learns_beyond_zeroshot_and_mean_depth(stores, tmp_path):
    cfg = TrainConfig.from_params({"epochs": 6, "batch_size": 2, "lr": 5e-3, "schedule": "constant"})
    _, kwargs = setup(stores)
    train(**kwargs, cfg=cfg, checkpoint=tmp_path / "model.pt", state=tmp_path / "last.pt")
    ckpt = load_checkpoint(tmp_path / "model.pt")
    model = build_from_checkpoint(ckpt, adapter="msa", features_attrs=open_store(stores["features"]).attrs)
    dataset = open_store(stores["dataset"])
    test_set = TrainingDataset(split="test", keys=model.batch_keys(), with_flipped=True, **stores)
    loader = torch.utils.data.DataLoader(test_set, batch_size=2)
    ours, _ = evaluate_model(model, loader, dataset["depth_eval"], eval_cfg=EVAL, device=torch.device("cpu"))
    zeroshot, _ = evaluate_predictions(open_store(stores["zeroshot"])["depth"], dataset, cfg=EVAL)
    train_idx = np.flatnonzero(np.asarray(dataset["split"][:]) == 0)
    depth = np.asarray(dataset["depth"].get_orthogonal_selection((train_idx,)))
    constant = np.full(dataset["depth_eval"].shape, depth[depth > 0].mean(), dtype=np.float32)
    mean_depth, _ = evaluate_predictions(constant, dataset, cfg=EVAL)
    print({"ours": ours["abs_rel"], "zeroshot": zeroshot["abs_rel"], "mean": mean_depth["abs_rel"]})
    # 2 training images of one room, tested on another room (seeded, deterministic on CPU):
    # measured 0.295 vs zero-shot 0.396 and mean depth 0.351
    assert ours["abs_rel"] < 0.8 * zeroshot["abs_rel"]
    assert ours["abs_rel"] < 0.9 * mean_depth["abs_rel"]


def test_contradicting_settings_are_refused_before_work():
    adapters = AdaptersConfig.from_params({"msa": {"segments": "color"}})
    with pytest.raises(ConfigError, match="segments.method' is 'none'"):
        check_training_configs(
            adapter="msa", loss="l1", adapters=adapters, segments=SegmentsConfig(method="none"), clip=ClipConfig()
        )
    clip = ClipConfig.from_params({"cache_layers": LAYERS})
    published_msa = AdaptersConfig.from_params({"msa": {"layers": ["stem", "layer1", *LAYERS]}})
    with pytest.raises(ConfigError, match=r"does not cache"):
        check_training_configs(adapter="msa", loss="l1", adapters=published_msa, segments=SegmentsConfig(), clip=clip)
    with pytest.raises(ConfigError, match="valid values are .*'coarse_refine'"):
        check_training_configs(
            adapter="dpt", loss="l1", adapters=AdaptersConfig(), segments=SegmentsConfig(), clip=clip
        )
    with pytest.raises(ConfigError, match="valid values are .*'silog'"):
        check_training_configs(
            adapter="msa", loss="berhu", adapters=AdaptersConfig(), segments=SegmentsConfig(), clip=clip
        )


def test_non_finite_loss_stops_and_keeps_last_good_state(stores, tmp_path):
    cfg = TrainConfig.from_params({"epochs": 2, "batch_size": 2, "lr": 1e-3})
    _, kwargs = setup(stores, adapters={"coarse_refine": {"hidden": 8, "fine_channels": 4}}, adapter="coarse_refine")

    def poison(epoch, row):  # after epoch 1 has been saved, make every later prediction NaN
        kwargs["model"].fine.conv3.bias.data.fill_(float("nan"))

    with pytest.raises(TrainingError, match="non-finite loss .* epoch 2.*kept in"):
        train(**kwargs, cfg=cfg, checkpoint=tmp_path / "m.pt", state=tmp_path / "last.pt", on_epoch_end=poison)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["epoch"] == 1 and all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    assert not (tmp_path / "m.pt").exists()


def test_checkpoint_refuses_other_adapter_and_other_features(stores, tmp_path):
    cfg = TrainConfig.from_params({"epochs": 1, "batch_size": 2})
    _, kwargs = setup(stores, adapters={"coarse_refine": {"hidden": 8, "fine_channels": 4}}, adapter="coarse_refine")
    train(**kwargs, cfg=cfg, checkpoint=tmp_path / "m.pt", state=tmp_path / "last.pt")
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt["adapter"] == "coarse_refine" and ckpt["epoch"] == 1 and "optimizer" in ckpt
    with pytest.raises(CheckpointError, match="holds adapter 'coarse_refine' but params ask for 'msa'"):
        build_from_checkpoint(ckpt, adapter="msa")
    _, kwargs = setup(stores)
    train(**kwargs, cfg=cfg, checkpoint=tmp_path / "msa.pt", state=tmp_path / "last.pt")
    attrs = dict(open_store(stores["features"]).attrs) | {"weights": "openai"}
    with pytest.raises(CheckpointError, match=r"other CLIP features \(differing: \['weights'\]\)"):
        build_from_checkpoint(load_checkpoint(tmp_path / "msa.pt"), adapter="msa", features_attrs=attrs)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
