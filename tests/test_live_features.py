"""Live features (params ``features: live``): the same features as the cached store on the same input, the seeded
random crop of every per-pixel input, and what training and evaluation depend on."""

from __future__ import annotations

import csv
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import make_params, tiny_backbone
from torch.utils.data import default_collate

from depthcore.config.paths import Paths
from depthcore.data.batch import BACKBONE_FLIP, BACKBONE_RGB, loader_keys, store_paths
from depthcore.data.samples import TrainingDataset
from depthcore.data.splits import split_indices
from depthcore.data.store import Store
from depthcore.errors import ConfigError
from depthcore.evaluation.evaluate import evaluate_checkpoint
from depthcore.evaluation.metrics import eigen_crop_mask
from depthcore.features import live as live_module
from depthcore.features.backbone import cached_layers, extract_features, features_attrs
from depthcore.features.live import LiveFeatures
from depthcore.geometry.frame import NYU_HEIGHT, NYU_WIDTH, normalise_imagenet
from depthcore.models.backbones.zoo.registry import BACKBONES
from depthcore.seeding import numpy_generator
from depthcore.training.checkpoint import CheckpointError, build_from_checkpoint, load_checkpoint
from depthcore.training.inputs import needed_inputs, run_keys
from depthcore.training.loop import jitter_rgb
from depthcore.training.run import train_model
from depthcore.weights.manifest import read_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LAYERS = ("block1", "block2")  # the forward stops after block 2: a cheap DINOv2 ViT-S/14 (random weights)
KEYS = ("clip_block1", "clip_block2", "clip_block2_cls")
WEIGHTS = {"backbone": "dinov2_vits14", "pretrained": "none", "init_seed": 0, "file": None, "sha256": None}
IMAGES = np.array([0, 1])


@pytest.fixture(scope="module")
def vit():
    cfg = SimpleNamespace(init_seed=0, pretrained="none", layers=LAYERS)
    return BACKBONES.get("dinov2_vits14").build(cfg=cfg, state_dict=None)


@pytest.fixture(scope="module")
def cached(vit, synthetic_dataset, tmp_path_factory):
    """backbone.zarr of the first two images, written by the features stage's own function."""
    tmp = tmp_path_factory.mktemp("live")
    two = tmp / "dataset.zarr"
    import zarr

    source = zarr.open_group(str(synthetic_dataset), mode="r")
    group = zarr.open_group(str(two), mode="w")
    group.create_array("rgb", data=source["rgb"][: len(IMAGES)])
    group.attrs.update(dict(source.attrs))
    out = extract_features(two, tmp / "backbone.zarr", backbone=vit, weights=WEIGHTS, layers=LAYERS, key=None,
                           progress=False)  # fmt: skip
    return {"dataset": two, "features": out}


def batch_of(data: TrainingDataset, epoch: int = 0) -> dict[str, torch.Tensor]:
    data.set_epoch(epoch)
    return default_collate([data[i] for i in range(len(data))])


def test_live_features_equal_the_cached_store_on_the_fixed_crop(vit, cached):
    """Evaluation's route (both views, one image at a time as the store): the live float16 tensors are the store's bit
    for bit (live rounds float32 to float16 as the store does). Training's (the view a sample uses, mirrored ones
    included, the batch at once): within one float16 step of the store's, and equal almost everywhere."""
    live = LiveFeatures(vit, KEYS)
    assert live.layers == LAYERS
    for flip, seed in (("none", 0), ("random", 1)):
        kwargs = {"stores": cached, "indices": IMAGES, "flip": flip, "seed": seed}
        store = batch_of(TrainingDataset(keys=KEYS, with_flipped=flip == "none", **kwargs))
        loaded = batch_of(TrainingDataset(keys=loader_keys(KEYS, live=True), with_flipped=flip == "none", **kwargs))
        assert set(loaded) == {"index", BACKBONE_RGB, BACKBONE_FLIP}
        computed = live(loaded, with_flipped=flip == "none")
        assert BACKBONE_RGB not in computed and set(store) == set(computed)
        for key, value in store.items():
            assert computed[key].dtype == value.dtype, key
            if flip == "none":
                assert torch.equal(computed[key], value), key
            else:  # batched kernels may round float32 ~1e-7 apart: a value can land one float16 step away
                close = torch.isclose(computed[key].float(), value.float(), rtol=2**-10, atol=2**-24)
                assert close.all() and (computed[key] == value).float().mean() > 0.999, key
        if flip == "random":  # seed 1 mirrors one of the two images: the mirrored view was compared
            assert sorted(loaded[BACKBONE_FLIP].tolist()) == [False, True]
    # the backbone's identity is what a store of it records: the checkpoint comparison holds across routes
    assert features_attrs(vit, WEIGHTS, LAYERS) | {"n_images": 2} == dict(Store(cached["features"]).attrs)


def test_random_crop_slices_every_per_pixel_input_at_the_drawn_offset(pipeline):
    keys = ("rgb", "depth", "zeroshot", "segments", "intrinsics", BACKBONE_RGB, BACKBONE_FLIP)
    n = Store(pipeline.dataset).shape("rgb")[0]
    data = TrainingDataset(stores=store_paths(pipeline), indices=np.arange(n), keys=keys, flip="random", seed=3,
                           random_crop=True)  # fmt: skip
    frame, fixed = {}, TrainingDataset(stores=store_paths(pipeline), indices=np.arange(n), keys=("intrinsics",))
    offsets = set()
    for epoch, index in ((0, 0), (1, 0), (1, 4)):
        data.set_epoch(epoch, phase=1)
        sample = data[index]
        top, left = numpy_generator(3, "crop", 1, epoch, index).integers(0, (480 - 416 + 1, 640 - 544 + 1))
        offsets.add((int(top), int(left)))
        rows, cols = slice(top, top + 416), slice(left, left + 544)
        frame["rgb"] = torch.from_numpy(Store(pipeline.dataset).read("rgb", index)[rows, cols]).permute(2, 0, 1)
        frame["depth"] = torch.from_numpy(Store(pipeline.dataset).read("depth", index)[rows, cols])
        frame["zeroshot"] = torch.from_numpy(Store(pipeline.zeroshot).read("depth", index)[rows, cols])
        labels = Store(pipeline.segments).read("labels", index)[rows, cols]
        frame["segments"] = torch.from_numpy(labels.astype(np.int64))
        flipped = data.is_flipped(index)
        mirror = (lambda x: x.flip(-1)) if flipped else (lambda x: x)
        assert sample[BACKBONE_FLIP].item() is flipped
        assert torch.equal(sample[BACKBONE_RGB], frame["rgb"].float() * (1 / 255))  # never mirrored
        assert torch.equal(sample["rgb"], mirror(frame["rgb"].float() / 255))
        assert torch.equal(sample["depth"][0], mirror(frame["depth"].float()))
        assert torch.equal(sample["zeroshot"][0], mirror(frame["zeroshot"].float()))
        assert torch.equal(sample["segments"], mirror(frame["segments"]))
        # principal point moved by the offset (from the fixed crop's); mirrored about the crop's width
        cx = fixed.intrinsics[0, 2] + 60 - left
        expected_cx = 543 - cx if flipped else cx
        assert torch.allclose(sample["intrinsics"][0, 2], expected_cx) and torch.allclose(
            sample["intrinsics"][1, 2], fixed.intrinsics[1, 2] + 56 - top
        )
        assert torch.equal(data[index]["depth"], sample["depth"])  # drawn again alike (a resumed run)
    assert len(offsets) == 3
    with pytest.raises(ValueError, match="random_crop needs live features"):
        TrainingDataset(stores=store_paths(pipeline), indices=np.arange(n), keys=("clip_layer4",), random_crop=True)


def test_colour_jitter_scales_the_backbone_input_like_the_adapters():
    batch = {"rgb": torch.full((2, 3, 2, 2), 0.5), BACKBONE_RGB: torch.full((2, 3, 2, 2), 0.5)}
    out = jitter_rgb(batch, 0.4, torch.Generator().manual_seed(1))
    scale = 1 + 0.4 * (2 * torch.rand(2, generator=torch.Generator().manual_seed(1)) - 1)
    assert torch.equal(out[BACKBONE_RGB], out["rgb"])
    assert torch.allclose(out["rgb"][:, 0, 0, 0], 0.5 * scale)


def test_live_runs_depend_on_the_backbone_weights_not_the_store():
    paths = Paths()
    cached, live = make_params(), make_params({"features": "live"})
    assert paths.features in needed_inputs(cached, paths)
    assert paths.backbone_weights not in needed_inputs(cached, paths)
    needed = needed_inputs(live, paths)
    assert paths.features not in needed and {paths.backbone_weights, paths.backbone_settings} <= set(needed)
    assert paths.clip_shallow in needed_inputs(live, paths) or not live.adapter_config.needs_shallow()
    assert "features" in run_keys(live)
    assert (NYU_HEIGHT, NYU_WIDTH) == (480, 640)


PROBE = {
    "adapter": "linear_probe",
    "adapters.linear_probe.layers": ["layer4"],
    "adapters.linear_probe.class_token": False,
    "adapters.linear_probe.bins": 8,
    "train.preset": "custom",
    "train.epochs": 1,
    "train.batch_size": 2,
    "train.lr": 1e-3,
    "train.optimizer": "adamw",
}


def own_outputs(paths, tmp, name: str):
    return dataclasses.replace(
        paths,
        model=tmp / f"{name}.safetensors",
        train_metrics=tmp / f"{name}.json",
        train_curves=tmp / f"{name}.csv",
        predictions=tmp / f"{name}.zarr",
        eval_metrics=tmp / f"{name}_eval.json",
        eval_per_image=tmp / f"{name}_per_image.csv",
        eval_figure=tmp / f"{name}.png",
    )


def test_live_training_and_evaluation_match_the_cached_route(pipeline, tmp_path, monkeypatch):
    """A linear probe on a tiny random RN50: evaluated live, a cached-trained checkpoint predicts exactly what the
    cached route predicts; trained live, the checkpoint records the route and the same feature identity, and a
    checkpoint of other weights is refused. (The backbone file is swapped for the tiny RN50 of the same manifest.)"""
    weights = read_manifest(pipeline.backbone_weights, stage="fetch_backbone")
    store = extract_features(pipeline.dataset, tmp_path / "backbone.zarr", backbone=tiny_backbone(), weights=weights,
                             layers=("layer4",), key=None, progress=False)  # fmt: skip
    monkeypatch.setattr(live_module, "load_backbone", lambda folder: tiny_backbone())
    paths = dataclasses.replace(pipeline, features=store)
    cached_params, live_params = make_params(PROBE), make_params(PROBE | {"features": "live"})
    cached = own_outputs(paths, tmp_path, "cached")
    train_model(cached_params, cached, resume_key=None, progress=False)
    evaluate_checkpoint(cached_params, cached, device="cpu", progress=False)
    by_live = dataclasses.replace(own_outputs(paths, tmp_path, "by_live"), model=cached.model)
    evaluate_checkpoint(live_params, by_live, device="cpu", progress=False)
    expected = Store(cached.predictions).read("depth")
    assert expected.any() and np.array_equal(Store(by_live.predictions).read("depth"), expected)

    live = own_outputs(paths, tmp_path, "live")
    train_model(live_params, live, resume_key=None, progress=False)
    meta, _ = load_checkpoint(live.model)
    cached_meta, _ = load_checkpoint(cached.model)
    assert meta["feature_route"] == "live" and cached_meta["feature_route"] == "cached"
    assert meta["features"] == cached_meta["features"] and meta["features"]["weights"] == weights
    monkeypatch.setattr(live_module, "read_manifest", lambda folder, stage: weights | {"init_seed": 1})
    with pytest.raises(CheckpointError, match=r"other CLIP features \(differing: \['weights'\]\)"):
        evaluate_checkpoint(live_params, live, device="cpu", progress=False)


def test_with_live_features_the_features_stage_caches_only_the_zero_shot_layer(vit, cached, tmp_path):
    rn50 = tiny_backbone()
    assert cached_layers(rn50, ("layer2", "layer3"), live=True) == ("layer4",)  # DepthCLIP's head reads it
    assert cached_layers(vit, LAYERS, live=True) == ()  # no text tower: nothing
    assert cached_layers(vit, LAYERS) == LAYERS
    empty = extract_features(cached["dataset"], tmp_path / "none.zarr", backbone=vit, weights=WEIGHTS, layers=(),
                             key=None, progress=False)  # fmt: skip
    assert Store(empty).attrs["n_images"] == len(IMAGES) and Store(empty).attrs["layers"] == {}


def test_full_frame_evaluation_predicts_the_whole_frame_as_computed_by_hand(pipeline, tmp_path, monkeypatch):
    """eval.frame full: a probe trained on 416 x 544 crops predicts the whole 480 x 640 frame. The store holds what
    the route gives by hand (the frame's backbone features rounded to float16, the probe built at 480 x 640, its
    prediction averaged with the mirror image's flipped back), every pixel of the frame is predicted and the whole
    Eigen crop is scored, where the crop route leaves the rows above 56 empty and scores their intersection.
    (The backbone file is swapped for the tiny RN50 of the same manifest.)"""
    backbone = tiny_backbone()
    monkeypatch.setattr(live_module, "load_backbone", lambda folder: backbone)
    frame_params = make_params(PROBE | {"features": "live", "eval.frame": "full"})
    frame = own_outputs(pipeline, tmp_path, "frame")
    train_model(frame_params, frame, resume_key=None, progress=False)
    evaluate_checkpoint(frame_params, frame, device="cpu", progress=False)
    crop = dataclasses.replace(own_outputs(pipeline, tmp_path, "crop"), model=frame.model)
    evaluate_checkpoint(make_params(PROBE | {"features": "live"}), crop, device="cpu", progress=False)

    dataset = Store(pipeline.dataset)
    test = split_indices(dataset.read("split"), "test")
    meta, state = load_checkpoint(frame.model)
    model = build_from_checkpoint(meta, state, image_size=(NYU_HEIGHT, NYU_WIDTH)).eval()
    rgb = torch.from_numpy(dataset.read("rgb", test)).permute(0, 3, 1, 2).float() / 255.0

    def probe(x: torch.Tensor) -> torch.Tensor:
        feats = backbone.forward_features(normalise_imagenet(x), ("layer4",))["layer4"]
        return model({"clip_layer4": feats.float().to(torch.float16)})

    with torch.no_grad():
        expected = (0.5 * (probe(rgb) + probe(rgb.flip(-1)).flip(-1)))[:, 0].numpy()
    predicted = Store(frame.predictions)
    assert predicted.attrs["crop"] == [0, NYU_HEIGHT, 0, NYU_WIDTH]
    depth = predicted.read("depth")[test]
    np.testing.assert_allclose(depth, expected, rtol=0, atol=1e-5)
    assert (depth > 0).all()
    on_crop = Store(crop.predictions).read("depth")[test]
    assert (on_crop[:, :56] == 0).all() and (on_crop[:, 56:472, 60:604] > 0).all()
    gt, eigen = dataset.read("depth_eval", test), eigen_crop_mask(NYU_HEIGHT, NYU_WIDTH)
    for out, pred in ((frame, depth), (crop, on_crop)):  # abs_rel over the Eigen crop where predicted, by hand
        scored = [(g > 1e-3) & (g < 10) & eigen & (p > 1e-3) for g, p in zip(gt, pred, strict=True)]
        by_hand = [np.mean(np.abs(p[m] - g[m]) / g[m]) for g, p, m in zip(gt, pred, scored, strict=True)]
        rows = list(csv.DictReader(open(out.eval_per_image)))
        np.testing.assert_allclose([float(row["abs_rel"]) for row in rows], by_hand, rtol=1e-5)
        if out is frame:
            assert all((m == ((g > 1e-3) & (g < 10) & eigen)).all() for g, m in zip(gt, scored, strict=True))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"features": "live"}, "adapter 'clip_adapter' predicts the crop it was built for only"),
        (PROBE, "'features' is 'cached': the cached features are of the 416 x 544 crop"),
    ],
)
def test_full_frame_evaluation_needs_a_probe_on_live_features(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_params({"adapter": "clip_adapter"} | overrides | {"eval.frame": "full"})
