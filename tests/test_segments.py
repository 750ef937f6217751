"""Segment maps: label assembly, the gt / felzenszwalb / none segmenters, the stage loop, the
alignment summary, and bad input. SAM itself (random weights) is exercised in test_segments_sam.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_params
from skimage.segmentation import felzenszwalb

from depthcore.data.store import ResumableStore, Store, StoreError
from depthcore.evaluation.segments import image_alignment, summarize_alignment, summarize_segments
from depthcore.features.segments import (
    SamSegmenter,
    SegmentsError,
    assemble_labels,
    build_segmenter,
    felzenszwalb_segmenter,
    relabel_by_area,
    remove_small_regions,
    write_segments,
)
from depthcore.models.backbones.sam import SamError, build_sam
from depthcore.weights.fetch_sam import SAM_CHECKPOINTS, fetch_sam_weights
from depthcore.weights.manifest import WeightsError
from depthcore.weights.sam import load_sam, load_sam_checkpoint

LOCAL = Path("weights/sam")

SAM_OFFLINE = make_params().sam


def segments_cfg(method):
    return make_params({"segments.method": method, "adapters.msa.segments": "none"}).segments


def write(method, dataset, out, weights_dir, **kwargs):
    return write_segments(
        segments_cfg(method),
        SAM_OFFLINE,
        dataset,
        out,
        weights_dir=weights_dir,
        progress=False,
        **{"key": None, **kwargs},
    )


def _box(shape, rows, cols):
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


# ------------------------------------------------------------------------------------ assembly
def test_assemble_labels_smaller_masks_win_and_ids_follow_area():
    shape = (4, 6)
    table = _box(shape, slice(0, 4), slice(0, 6))  # 24 px, the whole image
    cup = _box(shape, slice(1, 3), slice(1, 3))  # 4 px inside the table
    wall = _box(shape, slice(0, 4), slice(3, 6))  # 12 px, overlaps the table's right half
    handle = _box(shape, slice(1, 3), slice(1, 2))  # 2 px inside the cup: smaller, so it wins there
    labels = assemble_labels([cup, table, handle, wall], shape)
    # painted largest first: table (24), wall (12), cup (4), handle (2) on top. Visible areas:
    # wall 12, table 24 - 12 - 4 = 8, cup 2, handle 2 (tie: the cup was larger, so it gets the smaller id).
    expected = np.array(
        [
            [2, 2, 2, 1, 1, 1],
            [2, 4, 3, 1, 1, 1],
            [2, 4, 3, 1, 1, 1],
            [2, 2, 2, 1, 1, 1],
        ],
        dtype=np.int32,
    )
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == np.int32


def test_assemble_labels_drops_fully_covered_masks_and_handles_no_masks():
    shape = (2, 4)
    left, right = _box(shape, slice(None), slice(0, 2)), _box(shape, slice(None), slice(2, 4))
    everything = np.ones(shape, dtype=bool)  # largest: painted first, then fully covered
    labels = assemble_labels([everything, left, right], shape)
    np.testing.assert_array_equal(labels, [[1, 1, 2, 2], [1, 1, 2, 2]])  # equal areas: given order
    np.testing.assert_array_equal(assemble_labels([], shape), np.zeros(shape, np.int32))


def test_relabel_by_area_orders_largest_first_keeps_zero():
    labels = np.array([[7, 7, 7, 0], [3, 3, 9, 9], [5, 0, 0, 0]])
    # areas: 7 -> 3, 3 -> 2, 9 -> 2 (tie with 3: old id order), 5 -> 1
    np.testing.assert_array_equal(relabel_by_area(labels), [[1, 1, 1, 0], [2, 2, 3, 3], [4, 0, 0, 0]])
    with pytest.raises(SegmentsError, match=">= 0"):
        relabel_by_area(np.array([[-1, 2]]))


def test_remove_small_regions_holes_and_islands():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0:4, 0:4] = True
    mask[1, 1] = False  # a 1-px hole
    mask[5, 5] = True  # a 1-px island
    filled, changed = remove_small_regions(mask, 2, "holes")
    assert changed and filled[1, 1] and filled[5, 5]
    cleaned, changed = remove_small_regions(filled, 2, "islands")
    assert changed and not cleaned[5, 5] and cleaned[0:4, 0:4].all() and cleaned.sum() == 16
    _, changed = remove_small_regions(cleaned, 2, "islands")
    assert not changed


# ----------------------------------------------------------------------------------- segmenters
def test_felzenszwalb_on_two_synthetic_images(synthetic_dataset):
    data = Store(synthetic_dataset, required=("rgb",))
    cfg = make_params().segments.felzenszwalb
    segment = felzenszwalb_segmenter(cfg)
    for i in (0, 1):
        rgb = data.read("rgb", i)
        labels = segment(rgb, None)
        assert labels.shape == rgb.shape[:2] and labels.dtype == np.int32
        assert labels.min() == 1  # superpixels cover every pixel
        ids, counts = np.unique(labels, return_counts=True)
        np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
        assert np.all(np.diff(counts) <= 0), "ids must be ordered by area, largest first"
        # the same partition as scikit-image's own output: a bijection between the two id sets
        reference = felzenszwalb(rgb, scale=cfg.scale, sigma=cfg.sigma, min_size=cfg.min_size)
        pairs = np.unique(np.stack([labels.ravel(), reference.ravel()]), axis=1)
        assert pairs.shape[1] == len(ids) == len(np.unique(reference))


def test_gt_stage_on_synthetic_store_and_summary(synthetic_dataset, tmp_path):
    out = write("gt", synthetic_dataset, tmp_path / "segments.zarr", tmp_path)
    store = Store(out, required=("labels",))
    data = Store(synthetic_dataset, required=("instances",))
    assert store.shape("labels") == data.shape("instances") and store.read("labels", 0).dtype == np.int32
    assert store.attrs["method"] == "gt"
    for i in (0, 1):
        labels, inst = store.read("labels", i), data.read("instances", i)
        np.testing.assert_array_equal(labels == 0, inst == 0)
        # same partition, renumbered: each label maps to exactly one instance id and back
        pairs = np.unique(np.stack([labels.ravel(), inst.ravel()]), axis=1)
        assert pairs.shape[1] == len(np.unique(labels)) == len(np.unique(inst))
    summary = summarize_segments(out, synthetic_dataset, progress=False)
    assert set(summary) == {"all", "test"}  # numbers only: settings are params
    assert summary["all"]["images"] == data.shape("instances")[0]
    assert summary["all"]["mean_best_iou"] == pytest.approx(1.0)
    assert summary["all"]["objects_found_iou0.5"] == pytest.approx(1.0)
    assert summary["test"]["images"] == int(np.sum(data.read("split") == 2))
    assert not (tmp_path / "segments.zarr.partial").exists()


def test_none_stage_gives_zeros(synthetic_dataset, tmp_path):
    out = write("none", synthetic_dataset, tmp_path / "s.zarr", tmp_path)
    labels = Store(out).read("labels")
    assert labels.dtype == np.int32 and not labels.any()
    summary = summarize_segments(out, synthetic_dataset, progress=False)
    assert summary["all"]["coverage"] == 0.0 and summary["all"]["mean_best_iou"] == 0.0


def test_stage_resumes_after_interruption(synthetic_dataset, tmp_path, monkeypatch):
    import depthcore.features.segments as segments

    calls = []
    real = segments.segment_gt

    def flaky(rgb, instances):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(rgb, instances)

    out = tmp_path / "s.zarr"
    monkeypatch.setattr(segments, "segment_gt", flaky)
    with pytest.raises(KeyboardInterrupt):
        write("gt", synthetic_dataset, out, tmp_path, key="k")
    assert not out.exists() and (tmp_path / "s.zarr.partial").exists()
    with pytest.raises(StoreError):
        Store(out)
    calls.clear()
    monkeypatch.setattr(segments, "segment_gt", lambda rgb, inst: (calls.append(1), real(rgb, inst))[1])
    write("gt", synthetic_dataset, out, tmp_path, key="k")
    n = Store(synthetic_dataset).shape("rgb")[0]
    assert len(calls) == n - 2  # images 0 and 1 were kept
    inst = Store(synthetic_dataset).read("instances", 0)
    np.testing.assert_array_equal(Store(out).read("labels", 0), relabel_by_area(inst))


def test_sam_segmenter_with_no_masks_gives_zeros():
    class NoMasks:
        box_nms_thresh = crop_nms_thresh = 0.7

        def generate(self, image):
            return []

    segmenter = SamSegmenter.__new__(SamSegmenter)
    segmenter.generator, segmenter.min_area, segmenter.nms_thresh = NoMasks(), 100, 0.7
    labels = segmenter(np.zeros((5, 7, 3), np.uint8))
    np.testing.assert_array_equal(labels, np.zeros((5, 7), np.int32))


# ------------------------------------------------------------------------------------ alignment
def test_alignment_known_answer():
    instances = np.zeros((4, 4), np.int32)
    instances[:, :2] = 5  # object A: left half, 8 px
    instances[:2, 2:] = 9  # object B: top-right quadrant, 4 px
    labels = np.zeros((4, 4), np.int32)
    labels[:, :2] = 1  # exactly A -> IoU 1
    labels[0, 2:] = 2  # top row of B (2 px) -> IoU 2 / 4 = 0.5
    stats = image_alignment(labels, instances)
    assert stats.segments == 2 and stats.coverage == pytest.approx(10 / 16)
    np.testing.assert_allclose(stats.best_iou, [1.0, 0.5])
    # a segment spilling onto unlabelled pixels counts whole: B' = B + 4 unlabelled px -> 4 / 8
    labels[:, 2:] = 2
    np.testing.assert_allclose(image_alignment(labels, instances).best_iou, [1.0, 0.5])
    # an image where no segment touches the single object
    other = image_alignment(np.zeros((2, 2), np.int32), np.ones((2, 2), np.int32))
    summary = summarize_alignment([stats, other])
    assert summary["images"] == 2 and summary["gt_objects"] == 3
    assert summary["segments_per_image_mean"] == 1.0 and summary["segments_per_image_median"] == 1.0
    assert summary["coverage"] == pytest.approx((10 / 16 + 0) / 2)
    assert summary["mean_best_iou"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert summary["objects_found_iou0.5"] == pytest.approx(2 / 3)
    no_gt = summarize_alignment([image_alignment(labels)])
    assert no_gt["gt_objects"] == 0 and "mean_best_iou" not in no_gt


# ------------------------------------------------------------------------------------ bad input
def test_unknown_method_and_model_list_valid_ones(tmp_path):
    with pytest.raises(SegmentsError, match="valid methods"):
        build_segmenter(segments_cfg("sam").model_copy(update={"method": "slic"}), SAM_OFFLINE, weights_dir=tmp_path)
    with pytest.raises(SamError, match="vit_l"):
        build_sam(model="vit_x", init_seed=0)


def test_gt_without_instances_is_a_clear_error(tmp_path):
    store = ResumableStore(tmp_path / "dataset.zarr", key=None)
    store.array("rgb", (1, 8, 8, 3), np.uint8)[:] = 0
    store.array("split", (1,), np.int8)[:] = 0
    store.mark_done(1)
    path = store.commit({"source": "handmade"})
    with pytest.raises(SegmentsError, match="no 'instances'"):
        write("gt", path, tmp_path / "s.zarr", tmp_path)


def test_weights_folder_manifest_and_missing_files(tmp_path, monkeypatch):
    out = tmp_path / "w"
    fetch_sam_weights(SAM_OFFLINE, out, local_dir=LOCAL)
    assert sorted(p.name for p in out.iterdir()) == ["weights.json"]
    torch.testing.assert_close(
        next(load_sam(out).parameters()), next(build_sam(model="vit_b", init_seed=0).parameters())
    )
    with pytest.raises(WeightsError, match="fetch_sam"):
        load_sam(tmp_path / "nothing")
    local = tmp_path / "weights/sam"
    local.mkdir(parents=True)
    with pytest.raises(WeightsError, match="nope.pth' is not a known tag"):
        fetch_sam_weights(make_params({"sam.pretrained": str(local / "nope.pth")}).sam, out, local_dir=local)
    torch.save(torch.nn.Linear(2, 2).state_dict(), local / "other.pth")  # another model's file: refused right here
    with pytest.raises(SamError, match=r"other.pth does not match model 'vit_b'.*unexpected keys \['bias', 'weight'\]"):
        fetch_sam_weights(make_params({"sam.pretrained": str(local / "other.pth")}).sam, out, local_dir=local)
    assert not (out / "other.pth").exists()

    def fake_fetch(remote, directory, progress=True):  # the official download, without network
        (directory / remote.filename).write_bytes(b"x")
        return directory / remote.filename

    monkeypatch.setattr("depthcore.weights.fetch_sam.fetch", fake_fetch)
    manifest = fetch_sam_weights(make_params({"sam.pretrained": "official"}, offline=False).sam, out, local_dir=LOCAL)
    assert f'"sha256": "{SAM_CHECKPOINTS["vit_b"].sha256}"' in manifest.read_text()
    assert {r.url.rsplit("/", 1)[1] for r in SAM_CHECKPOINTS.values()} == {
        "sam_vit_b_01ec64.pth",
        "sam_vit_l_0b3195.pth",
        "sam_vit_h_4b8939.pth",
    }


def test_checkpoint_loading_is_strict_and_names_keys(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    good = tmp_path / "good.pth"
    torch.save({k: v + 1 for k, v in model.state_dict().items()}, good)
    target = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    load_sam_checkpoint(target, good, model_name="vit_b")
    torch.testing.assert_close(target[0].weight, model[0].weight + 1)

    wrong = tmp_path / "wrong.pth"
    state = model.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["1.bias"]
    state["0.weight"] = torch.zeros(5, 3)
    torch.save(state, wrong)
    with pytest.raises(SamError, match=r"vit_l.*1 missing keys \['1.bias'\].*extra.weight.*0.weight"):
        load_sam_checkpoint(target, wrong, model_name="vit_l")

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SamError, match="could not read"):
        load_sam_checkpoint(target, junk, model_name="vit_b")
