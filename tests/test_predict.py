"""depthcore predict: live prediction equals the cached path, the size policy, the outputs, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_TRAINING, make_params
from PIL import Image

import depthcore.inference.predict as predict_module
from depthcore.artifacts import head_identity, load_head, save_head
from depthcore.cli import EXIT_ERROR, EXIT_IMAGES_FAILED, EXIT_INTERRUPTED, main
from depthcore.data.splits import split_indices
from depthcore.data.store import Store
from depthcore.evaluation.evaluate import evaluate_checkpoint
from depthcore.geometry.frame import DEPTHCLIP_CROP, NYU_INTRINSICS
from depthcore.inference.frame import (
    FEATHER_PX,
    FrameMap,
    ImageError,
    blend_windows,
    load_image,
    to_rgb8,
    window_starts,
)
from depthcore.inference.live import LivePredictor, PredictError
from depthcore.inference.outputs import COLORMAP, colourise, depth_to_mm, read_ply
from depthcore.inference.predict import OutputOptions, check_output_folder, crop_depth, predict_images
from depthcore.io import read_safetensors, write_safetensors_atomic
from depthcore.training.checkpoint import CheckpointError, load_checkpoint
from depthcore.training.run import train_model

NOBODY_UID = 65534  # the unprivileged user a root test process probes permissions as
# The MSA reading every computed input: cached CLIP layers, the zero-shot map (learned CLIP init), segments.
EVERY_INPUT = TINY_TRAINING | {
    "train.epochs": 1,
    "adapters.msa.alpha": 0.5,
    "adapters.msa.clip_init": "learned",
    "adapters.msa.segments": "color",
}


@pytest.fixture(scope="module")
def trained(pipeline, tmp_path_factory):
    """(paths, params) of a model trained and evaluated on the offline pipeline (its own outputs)."""
    root = tmp_path_factory.mktemp("trained")
    paths = dataclasses.replace(
        pipeline,
        model=root / "model.safetensors",
        train_metrics=root / "train.json",
        train_curves=root / "curves.csv",
        predictions=root / "predictions.zarr",
        eval_metrics=root / "eval.json",
        eval_per_image=root / "eval.csv",
        eval_figure=root / "eval.png",
    )
    params = make_params(EVERY_INPUT)
    train_model(params, paths, resume_key=None, progress=False)
    evaluate_checkpoint(params, paths, progress=False)
    return paths, params


def live_args(paths) -> dict:
    return {"backbone_weights": paths.backbone_weights, "head": paths.clip_head, "device": torch.device("cpu")}


def dataset_pngs(paths, folder, indices) -> list:
    """Dataset images ``indices`` written as PNG files (lossless: the same pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Store(paths.dataset).read("rgb")
    files = []
    for i in indices:
        Image.fromarray(rgb[i]).save(folder / f"img{i}.png")
        files.append(folder / f"img{i}.png")
    return files


def test_live_prediction_equals_the_evaluate_stage(trained, tmp_path):
    paths, _ = trained
    meta, _ = load_checkpoint(paths.model)
    assert {"rgb", "zeroshot", "segments", "clip_layer4"} <= set(
        LivePredictor.from_checkpoint(paths.model, sam_weights=paths.sam_weights, **live_args(paths)).keys
    )
    assert meta["inputs"]["segments"]["method"] == "felzenszwalb" and meta["inputs"]["zeroshot"]["head"]["sha256"]
    test_rows = split_indices(Store(paths.dataset).read("split"), "test")
    stored = Store(paths.predictions).read("depth")
    files = dataset_pngs(paths, tmp_path / "in", test_rows)
    args = ["--quiet", "--batch-size", "3", "--backbone-weights", str(paths.backbone_weights), "--head",
            str(paths.clip_head), "--sam-weights", str(paths.sam_weights)]  # fmt: skip
    assert (
        main(["predict", str(paths.model), *map(str, files), *args, "--out", str(tmp_path / "crop"), "--crop-only"])
        == 0
    )
    assert main(["predict", str(paths.model), str(files[0]), *args, "--out", str(tmp_path / "full")]) == 0
    top, bottom, left, right = DEPTHCLIP_CROP
    inner = (slice(top + FEATHER_PX - 1, bottom - FEATHER_PX + 1), slice(left + FEATHER_PX - 1, right - FEATHER_PX + 1))
    for i in test_rows:
        live = np.load(tmp_path / "crop" / f"img{i}.npy")
        assert live.shape == (480, 640) and live.dtype == np.float32
        outside = live.copy()
        outside[top:bottom, left:right] = 0
        assert (live[top:bottom, left:right] > 0).all() and not outside.any()
        np.testing.assert_allclose(live, stored[i], atol=1e-5, rtol=0)
    full = np.load(tmp_path / "full" / f"img{test_rows[0]}.npy")  # the whole image; the crop's prediction inside
    assert full.shape == (480, 640) and (full > 0).all()
    np.testing.assert_array_equal(full[inner], np.load(tmp_path / "crop" / f"img{test_rows[0]}.npy")[inner])


def test_live_zeroshot_equals_the_zeroshot_stage(pipeline, tmp_path):
    files = dataset_pngs(pipeline, tmp_path / "in", [0, 3])
    predictor = LivePredictor.zeroshot(**live_args(pipeline))
    summary = predict_images(predictor, files, tmp_path / "out", options=OutputOptions(crop_only=True), progress=False)
    assert summary.written == files and not summary.failed
    stored = Store(pipeline.zeroshot).read("depth")
    colour = Image.open(tmp_path / "out" / "img0_color.png")
    assert (colour.mode, colour.size) == ("RGB", (640, 480))
    for i in (0, 3):
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"img{i}.npy"), stored[i], atol=1e-5, rtol=0)


def test_size_policy_for_a_4_3_photo_by_hand():
    fmap = FrameMap.for_image(750, 1000)  # 1000 wide: scale 640 / 1000 = 480 / 750 = 0.64, nothing cut off
    assert (fmap.scale, fmap.x0, fmap.y0) == (0.64, 0.0, 0.0)
    crop = torch.full((416, 544), 3.0)
    depth = fmap.to_image(crop)
    assert depth.shape == (750, 1000)
    cols = np.flatnonzero(depth.max(axis=0) > 0)
    rows = np.flatnonzero(depth.max(axis=1) > 0)
    # the crop's footprint, frame columns 59.5..603.5 and rows 55.5..471.5, in the image: (f + 0.5) / 0.64 - 0.5
    # = columns 93.25..943.25 and rows 87.0..737.0
    assert (cols[0], cols[-1]) == (94, 943) and (rows[0], rows[-1]) == (87, 737)
    np.testing.assert_allclose(depth[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 3.0, rtol=1e-6)
    x, y = fmap.frame_from_image(*fmap.image_from_frame(np.array([0.0, 321.7]), np.array([5.0, 479.0])))
    np.testing.assert_allclose([x, y], [[0.0, 321.7], [5.0, 479.0]])


def test_size_policy_cuts_the_long_side_of_a_portrait_and_keeps_nyu_frames():
    fmap = FrameMap.for_image(1000, 750)  # portrait: scale 640 / 750 covers the width; 562.5 rows kept
    assert fmap.scale == pytest.approx(640 / 750) and fmap.x0 == 0 and fmap.y0 == pytest.approx((1000 - 562.5) / 2)
    assert FrameMap.for_image(480, 640).is_identity
    assert FrameMap.for_image(480, 640).intrinsics(NYU_INTRINSICS) == pytest.approx(NYU_INTRINSICS)
    # a 1280 x 960 camera is NYUv2's at twice the resolution: focal lengths double, the centre at 2 (c + 0.5) - 0.5
    fx, fy, cx, cy = FrameMap.for_image(960, 1280).intrinsics(NYU_INTRINSICS)
    assert (fx, fy, cx, cy) == pytest.approx(
        (2 * NYU_INTRINSICS[0], 2 * NYU_INTRINSICS[1], 2 * NYU_INTRINSICS[2] + 0.5, 2 * NYU_INTRINSICS[3] + 0.5)
    )


def test_exif_rotated_jpeg_gives_the_depth_of_the_upright_image(pipeline, tmp_path):
    rng = np.random.default_rng(0)
    stored = np.kron(rng.integers(0, 256, (75, 100, 3)), np.ones((10, 10, 1))).astype(np.uint8)  # 750 x 1000 stored
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", quality=95, exif=exif)
    with Image.open(tmp_path / "rotated.jpg") as raw:  # the decoded pixels as stored, not rotated
        decoded = np.asarray(raw.convert("RGB"))
    upright = np.rot90(decoded, k=-1)  # clockwise, by numpy
    Image.fromarray(np.ascontiguousarray(upright)).save(tmp_path / "upright.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rotated.jpg"), upright)
    predictor = LivePredictor.zeroshot(**live_args(pipeline))
    summary = predict_images(predictor, [tmp_path], tmp_path / "out", options=OutputOptions(crop_only=True),
                             progress=False)  # a folder: both images  # fmt: skip
    assert sorted(p.name for p in summary.written) == ["rotated.jpg", "upright.png"]
    rotated, ref = (np.load(tmp_path / "out" / f"{stem}.npy") for stem in ("rotated", "upright"))
    assert rotated.shape == (1000, 750)
    np.testing.assert_array_equal(rotated, ref)


def test_png_millimetres_and_point_cloud(pipeline, tmp_path):
    files = dataset_pngs(pipeline, tmp_path / "in", [1])
    options = OutputOptions(ply=True, colorbar=True)
    predict_images(LivePredictor.zeroshot(**live_args(pipeline)), files, tmp_path / "out", options=options,
                   progress=False)  # fmt: skip
    depth = np.load(tmp_path / "out" / "img1.npy")
    mm = np.asarray(Image.open(tmp_path / "out" / "img1_mm.png"))
    assert mm.dtype == np.uint16
    np.testing.assert_array_equal(mm, np.rint(depth.astype(np.float64) * 1000).astype(np.uint16))
    np.testing.assert_array_equal(depth_to_mm(np.array([0.0, 0.0014, 0.0016, 70.0])), [0, 1, 2, 65535])
    colour = np.asarray(Image.open(tmp_path / "out" / "img1_color.png"))
    assert colour.shape[0] == 480 and colour.shape[1] > 640  # the image, pixel for pixel, and its colour bar
    np.testing.assert_array_equal(colour[:, :640], colourise(depth, COLORMAP)[0])

    top, bottom, left, right = DEPTHCLIP_CROP  # the whole image, the zeroshot stage's crop prediction inside
    inner = (slice(top + FEATHER_PX - 1, bottom - FEATHER_PX + 1), slice(left + FEATHER_PX - 1, right - FEATHER_PX + 1))
    np.testing.assert_allclose(depth[inner], Store(pipeline.zeroshot).read("depth")[1][inner], atol=1e-5, rtol=0)
    vertices = read_ply(tmp_path / "out" / "img1.ply")
    assert len(vertices) == int((depth > 0).sum()) == 480 * 640
    fx, fy, cx, cy = NYU_INTRINSICS  # a 640 x 480 image is its own frame
    z = vertices["z"].astype(np.float64)
    u, v = fx * vertices["x"] / z + cx, fy * vertices["y"] / z + cy  # project the points back
    rows, cols = np.nonzero(depth > 0)
    np.testing.assert_allclose(u, cols, atol=1e-3)
    np.testing.assert_allclose(v, rows, atol=1e-3)
    np.testing.assert_allclose(z, depth[rows, cols], rtol=1e-6)
    rgb = np.asarray(Image.open(files[0]))
    np.testing.assert_array_equal(np.stack([vertices["red"], vertices["green"], vertices["blue"]], 1), rgb[rows, cols])


def test_existing_outputs_are_skipped_unless_overwrite(pipeline, tmp_path):
    files = dataset_pngs(pipeline, tmp_path / "in", [2])
    predictor = LivePredictor.zeroshot(**live_args(pipeline))
    crop_only = OutputOptions(crop_only=True)
    predict_images(predictor, files, tmp_path / "out", options=crop_only, progress=False)
    np.save(tmp_path / "out" / "img2.npy", np.zeros(1, np.float32))  # a sentinel: rewritten only if redone
    summary = predict_images(predictor, files, tmp_path / "out", options=crop_only, progress=False)
    assert summary.skipped == files and not summary.written
    assert np.load(tmp_path / "out" / "img2.npy").shape == (1,)
    overwrite = OutputOptions(overwrite=True, crop_only=True)
    summary = predict_images(predictor, files, tmp_path / "out", options=overwrite, progress=False)
    assert summary.written == files and np.load(tmp_path / "out" / "img2.npy").shape == (480, 640)


def test_unreadable_images_are_listed_and_the_rest_written(pipeline, tmp_path, capsys):
    files = dataset_pngs(pipeline, tmp_path / "in", [4])
    (tmp_path / "in" / "notes.jpg").write_text("not an image")
    truncated = (tmp_path / "in" / "img4.png").read_bytes()[:500]
    (tmp_path / "in" / "cut.png").write_bytes(truncated)
    args = ["predict", "zeroshot", str(tmp_path / "in"), str(tmp_path / "missing.png"), "--out", str(tmp_path / "out"),
            "--quiet", "--crop-only", "--backbone-weights", str(pipeline.backbone_weights),
            "--head", str(pipeline.clip_head)]  # fmt: skip
    assert main(args) == EXIT_IMAGES_FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("failed: ") for line in err)
    assert {"notes.jpg", "cut.png", "missing.png"} == {line.split(":")[1].strip().split("/")[-1] for line in err}
    assert (tmp_path / "out" / "img4.npy").exists() and not (tmp_path / "out" / "cut.npy").exists()
    assert files


def test_bad_checkpoints_are_refused_in_one_line_and_never_unpickled(trained, tmp_path, capsys):
    paths, _ = trained
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(paths.model.read_bytes()[:1000])
    meta, tensors = read_safetensors(paths.model)
    write_safetensors_atomic(tmp_path / "newer.safetensors", tensors, meta | {"format": "depthcore-adapter-99"})
    edited = {key: value for key, value in meta.items() if key != "context"}  # metadata edited by hand
    write_safetensors_atomic(tmp_path / "edited.safetensors", tensors, edited)
    invalid = meta | {"adapter_config": meta["adapter_config"] | {"widths": "wide"}}
    write_safetensors_atomic(tmp_path / "invalid.safetensors", tensors, invalid)
    (tmp_path / "models").mkdir()
    image = dataset_pngs(paths, tmp_path / "in", [0])[0]
    flags = ["--backbone-weights", str(paths.backbone_weights), "--head", str(paths.clip_head)]
    for name, words in (("model.safetensors", "a Python pickle, which depthcore never unpickles"),
                        ("truncated.safetensors", "not a readable checkpoint"),
                        ("newer.safetensors", "newer depthcore"),
                        ("edited.safetensors", "metadata is not what depthcore writes (KeyError 'context'"),
                        ("invalid.safetensors", "metadata is not what depthcore writes (ValidationError"),
                        ("models", "is a folder, not a checkpoint")):  # fmt: skip
        assert main(["predict", str(tmp_path / name), str(image), "--out", str(tmp_path / "out"), *flags]) == EXIT_ERROR
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
    assert not marker.exists() and not (tmp_path / "out").exists()
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(tmp_path / "newer.safetensors")


def test_other_weights_or_head_are_refused_naming_the_stage(trained, tmp_path):
    paths, _ = trained
    other = tmp_path / "clip"
    other.mkdir()
    manifest = json.loads((paths.backbone_weights / "weights.json").read_text())
    (other / "weights.json").write_text(json.dumps(manifest | {"init_seed": manifest["init_seed"] + 1}))
    with pytest.raises(PredictError, match="dvc repro fetch_backbone"):
        LivePredictor.from_checkpoint(
            paths.model, sam_weights=paths.sam_weights, **live_args(paths) | {"backbone_weights": other}
        )
    head = load_head(paths.clip_head)
    head.temperature *= 2  # another head of the same CLIP
    save_head(tmp_path / "head.safetensors", head, weights=head_identity(paths.clip_head)["weights"])
    with pytest.raises(PredictError, match="dvc repro clip_head"):
        LivePredictor.from_checkpoint(
            paths.model, sam_weights=paths.sam_weights, **live_args(paths) | {"head": tmp_path / "head.safetensors"}
        )


def test_the_command_is_installed_and_refuses_an_unusable_gpu(pipeline, tmp_path):
    script = REPO / ".venv" / "bin" / "depthcore"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "depthcore"]
    out = subprocess.run([*command, "predict", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--ply" in out and "zeroshot" in out
    if not torch.cuda.is_available():
        result = subprocess.run(
            [sys.executable, "-m", "depthcore", "predict", "zeroshot", str(tmp_path), "--out", str(tmp_path / "o"),
             "--device", "cuda", "--backbone-weights", str(pipeline.backbone_weights),
             "--head", str(pipeline.clip_head)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == EXIT_ERROR and "use --device cpu" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_window_tiling_and_blend_rule_by_hand():
    assert window_starts(480, 416) == [0, 64] and window_starts(640, 544) == [0, 96]
    assert window_starts(852, 416) == [0, 218, 436]  # 1 + ceil(436 / (416 - 2 x 32)) = 3 windows
    assert window_starts(416, 416) == [0]
    # a 4:3 canvas (480 x 640), four covering windows of constant depth v and the centre window (56, 60) of c
    windows = [(0, 0), (0, 96), (64, 0), (64, 96)]
    v = {(0, 0): 1.0, (0, 96): 2.0, (64, 0): 3.0, (64, 96): 5.0}
    c, f = 7.0, FEATHER_PX
    depths = np.stack([np.full((416, 544), v[p], np.float32) for p in windows])
    out = blend_windows((480, 640), windows, depths, (56, 60), np.full((416, 544), c, np.float32))
    assert out[0, 0] == v[(0, 0)] and out[479, 639] == v[(64, 96)]  # one window only
    assert out[10, 300] == pytest.approx((v[(0, 0)] + v[(0, 96)]) / 2)  # both fully weighted, no centre
    w = (544 - 530) / f  # col 530: 14 px before window (0, 0)'s right end
    assert out[10, 530] == pytest.approx((w * v[(0, 0)] + v[(0, 96)]) / (w + 1))
    a = (70 - 60 + 1) / f  # col 70: 10 px inside the centre window's left edge
    assert out[100, 70] == pytest.approx(a * c + (1 - a) * (v[(0, 0)] + v[(64, 0)]) / 2)
    top, bottom, left, right = DEPTHCLIP_CROP  # the crop farther than f - 1 px from its edges: the centre's
    assert (out[top + f - 1 : bottom - f + 1, left + f - 1 : right - f + 1] == c).all()
    assert out[top + f - 2, 300] != c


def test_canvas_covers_the_image_and_maps_back_by_hand():
    fmap = FrameMap.for_image(1080, 1920)  # 16:9: scale 480 / 1080, 853.3 canvas columns, 106 whole ones each side
    assert fmap.margins == (0, 106) and fmap.canvas_shape == (480, 852)
    columns = np.broadcast_to(np.arange(852, dtype=np.float32), (480, 852))
    depth = fmap.canvas_to_image(columns)  # depth = canvas column: its value at image column x is its position
    x = np.arange(1920)
    expected = np.clip(fmap.scale * (x + 0.5 - fmap.x0) - 0.5 + 106, 0, 851)
    np.testing.assert_allclose(depth[0], expected, atol=1e-4)
    np.testing.assert_array_equal(depth[0], depth[1079])
    assert (depth[:, 1:] >= depth[:, :-1]).all() and depth.dtype == np.float32


def test_whole_image_depth_keeps_the_crop_and_never_reads_its_outputs(pipeline, tmp_path):
    rng = np.random.default_rng(1)
    wide = np.kron(rng.integers(0, 256, (30, 60, 3)), np.ones((10, 10, 1))).astype(np.uint8)  # 300 x 600 (2:1)
    Image.fromarray(wide).save(tmp_path / "x.png")
    predictor = LivePredictor.zeroshot(**live_args(pipeline))
    summary = predict_images(predictor, [tmp_path], tmp_path, progress=False)  # --out: the input folder
    assert summary.written == [tmp_path / "x.png"]
    fmap = FrameMap.for_image(300, 600)
    full, (crop,) = np.load(tmp_path / "x.npy"), crop_depth(predictor, [(wide, fmap)], 1)
    assert full.shape == (300, 600) and (full > 0).all() and (crop == 0).mean() > 0.4
    fx, fy = fmap.frame_from_image(np.arange(600), np.arange(300))
    top, bottom, left, right = DEPTHCLIP_CROP  # pixels whose bilinear neighbours lie where the centre is kept
    rows = (fy >= top + FEATHER_PX) & (fy <= bottom - FEATHER_PX - 1)
    cols = (fx >= left + FEATHER_PX) & (fx <= right - FEATHER_PX - 1)
    assert rows.sum() > 50 and cols.sum() > 50
    np.testing.assert_allclose(full[np.ix_(rows, cols)], crop[np.ix_(rows, cols)], atol=1e-6, rtol=0)
    # --out is the input folder: x_mm.png and x_color.png are x's outputs, not inputs, on the next run
    again = predict_images(predictor, [tmp_path], tmp_path, progress=False)
    assert again.skipped == [tmp_path / "x.png"] and not again.written and not again.failed
    assert not list(tmp_path.glob("x_color_*")) and not list(tmp_path.glob(".*partial"))


def test_every_pillow_mode_keeps_its_dynamic_range(tmp_path):
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 256, (6, 8)).astype(np.uint8)
    rgb = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
    as_rgb = np.repeat(grey[..., None], 3, axis=-1)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")  # an 8-bit image x 257, 16-bit
    with Image.open(tmp_path / "grey16.png") as image:
        assert image.mode == "I;16"
    np.testing.assert_array_equal(load_image(tmp_path / "grey16.png"), as_rgb)
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "grey.tif")  # float in [0, 1]
    np.testing.assert_array_equal(load_image(tmp_path / "grey.tif"), as_rgb)
    i32 = Image.fromarray(grey.astype(np.int32) * 257)
    assert i32.mode == "I"
    for image in (i32, i32.convert("I;16B")):
        np.testing.assert_array_equal(to_rgb8(image, "x"), as_rgb)
    one_bit = Image.fromarray(grey).convert("1", dither=Image.Dither.NONE)  # threshold at 128
    np.testing.assert_array_equal(to_rgb8(one_bit, "x"), np.where(as_rgb >= 128, 255, 0))
    np.testing.assert_array_equal(to_rgb8(Image.fromarray(rgb).convert("CMYK"), "x"), rgb)  # C = 255 - R, K = 0
    alpha = rng.integers(0, 256, (6, 8)).astype(np.uint16)
    alpha[0, :2] = (0, 255)
    rgba = Image.fromarray(np.dstack([rgb, alpha.astype(np.uint8)]))
    over_white = np.rint((rgb * alpha[..., None] + 255 * (255 - alpha[..., None])) / 255)  # by hand, float
    np.testing.assert_allclose(to_rgb8(rgba, "x"), over_white, atol=0.51)
    assert (to_rgb8(rgba, "x")[0, 0] == 255).all() and (to_rgb8(rgba, "x")[0, 1] == rgb[0, 1]).all()
    palette = Image.fromarray(grey).convert("P")
    palette.info["transparency"] = int(np.asarray(palette)[0, 0])  # that palette entry is transparent
    assert (to_rgb8(palette, "x")[grey == grey[0, 0]] == 255).all()
    for image, words in ((Image.fromarray(grey.astype(np.float32)), "mode F"),  # 0..255 floats: not [0, 1]
                         (Image.fromarray(grey.astype(np.int32) * 1000), "mode I")):  # fmt: skip
        image.save(tmp_path / "bad.tif")
        with pytest.raises(ImageError, match=f"bad.tif: .*{words}") as err:
            load_image(tmp_path / "bad.tif")
        assert len(str(err.value).splitlines()) == 1


def test_faults_are_one_line_before_the_model_loads(pipeline, tmp_path, capsys, monkeypatch):
    image = dataset_pngs(pipeline, tmp_path / "in", [0])[0]
    flags = ["--backbone-weights", str(pipeline.backbone_weights), "--head", str(pipeline.clip_head)]
    (tmp_path / "a_file").write_text("not a folder")
    for args, words in (
        (["--out", str(tmp_path / "a_file")], "is a file, not a folder"),
        (["--out", str(tmp_path / "a_file" / "depth")], "cannot be created: " + str(tmp_path / "a_file")),
        (["--out", str(tmp_path / "o"), "--cmap", "nosuchmap"], "--cmap nosuchmap is not a matplotlib colormap"),
    ):
        assert main(["predict", "zeroshot", str(image), *flags, *args]) == EXIT_ERROR
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
    monkeypatch.chdir(tmp_path)  # outside the repository: no pipeline folders at the default places
    assert main(["predict", "zeroshot", str(image), "--out", "o"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(flag in err for flag in ("--backbone-weights", "--head", "--sam-weights"))
    assert not (tmp_path / "o").exists()
    shared = Path(tempfile.mkdtemp(dir=tmp_path.anchor + "tmp"))  # a folder another user can enter
    try:
        shared.chmod(0o755)
        for name, mode in (("read_only", 0o555), ("writable", 0o777)):
            (shared / name).mkdir()
            (shared / name).chmod(mode)
        user = os.geteuid()
        if user == 0:  # root writes anywhere: probe as nobody (permissions are checked against the effective id)
            os.seteuid(NOBODY_UID)
        try:
            code = main(["predict", "zeroshot", str(image), "--out", str(shared / "read_only" / "depth")])
            check_output_folder(shared / "writable")
        finally:
            os.seteuid(user)
        assert code == EXIT_ERROR
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"cannot write in {shared / 'read_only'} (Permission denied)" in err
    finally:
        shutil.rmtree(shared)


def test_ctrl_c_prints_one_line_and_leaves_no_partial_outputs(pipeline, tmp_path, capsys, monkeypatch):
    image = dataset_pngs(pipeline, tmp_path / "in", [5])[0]

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_module, "write_color", ctrl_c)  # after the .npy and the _mm.png are written
    args = ["predict", "zeroshot", str(image), "--out", str(tmp_path / "out"), "--quiet", "--crop-only",
            "--backbone-weights", str(pipeline.backbone_weights), "--head", str(pipeline.clip_head)]  # fmt: skip
    assert main(args) == EXIT_INTERRUPTED
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "interrupted" in err
    assert list((tmp_path / "out").iterdir()) == []  # all or none: none, and no temporary files
