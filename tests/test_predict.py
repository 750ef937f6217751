"""depthcore predict: live prediction equals the cached path, the size policy, the outputs, bad input."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_TRAINING, make_params
from PIL import Image

from depthcore.artifacts import head_identity, load_head, save_head
from depthcore.cli import EXIT_ERROR, EXIT_IMAGES_FAILED, main
from depthcore.data.splits import split_indices
from depthcore.data.store import Store
from depthcore.evaluation.evaluate import evaluate_checkpoint
from depthcore.geometry.frame import DEPTHCLIP_CROP, NYU_INTRINSICS
from depthcore.inference.frame import FrameMap, load_image
from depthcore.inference.live import LivePredictor, PredictError
from depthcore.inference.outputs import COLORMAP, colourise, depth_to_mm, read_ply
from depthcore.inference.predict import OutputOptions, predict_images
from depthcore.io import read_safetensors, write_safetensors_atomic
from depthcore.training.checkpoint import CheckpointError, load_checkpoint
from depthcore.training.run import train_model

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
    code = main(["predict", str(paths.model), *map(str, files), "--out", str(tmp_path / "out"), "--quiet",
                 "--batch-size", "3", "--backbone-weights", str(paths.backbone_weights), "--head", str(paths.clip_head),
                 "--sam-weights", str(paths.sam_weights)])  # fmt: skip
    assert code == 0
    for i in test_rows:
        live = np.load(tmp_path / "out" / f"img{i}.npy")
        assert live.shape == (480, 640) and live.dtype == np.float32
        top, bottom, left, right = DEPTHCLIP_CROP
        outside = live.copy()
        outside[top:bottom, left:right] = 0
        assert (live[top:bottom, left:right] > 0).all() and not outside.any()
        np.testing.assert_allclose(live, stored[i], atol=1e-5, rtol=0)


def test_live_zeroshot_equals_the_zeroshot_stage(pipeline, tmp_path):
    files = dataset_pngs(pipeline, tmp_path / "in", [0, 3])
    summary = predict_images(LivePredictor.zeroshot(**live_args(pipeline)), files, tmp_path / "out", progress=False)
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
    summary = predict_images(predictor, [tmp_path], tmp_path / "out", progress=False)  # a folder: both images
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

    vertices = read_ply(tmp_path / "out" / "img1.ply")
    assert len(vertices) == int((depth > 0).sum())
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
    predict_images(predictor, files, tmp_path / "out", progress=False)
    np.save(tmp_path / "out" / "img2.npy", np.zeros(1, np.float32))  # a sentinel: rewritten only if redone
    summary = predict_images(predictor, files, tmp_path / "out", progress=False)
    assert summary.skipped == files and not summary.written
    assert np.load(tmp_path / "out" / "img2.npy").shape == (1,)
    summary = predict_images(predictor, files, tmp_path / "out", options=OutputOptions(overwrite=True), progress=False)
    assert summary.written == files and np.load(tmp_path / "out" / "img2.npy").shape == (480, 640)


def test_unreadable_images_are_listed_and_the_rest_written(pipeline, tmp_path, capsys):
    files = dataset_pngs(pipeline, tmp_path / "in", [4])
    (tmp_path / "in" / "notes.jpg").write_text("not an image")
    truncated = (tmp_path / "in" / "img4.png").read_bytes()[:500]
    (tmp_path / "in" / "cut.png").write_bytes(truncated)
    args = ["predict", "zeroshot", str(tmp_path / "in"), str(tmp_path / "missing.png"), "--out", str(tmp_path / "out"),
            "--quiet", "--backbone-weights", str(pipeline.backbone_weights),
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
    image = dataset_pngs(paths, tmp_path / "in", [0])[0]
    for name, words in (("model", "not a readable checkpoint"), ("truncated", "not a readable checkpoint"),
                        ("newer", "newer depthcore")):  # fmt: skip
        assert (
            main(["predict", str(tmp_path / f"{name}.safetensors"), str(image), "--out", str(tmp_path / "out")])
            == EXIT_ERROR
        )
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
