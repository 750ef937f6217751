"""The NYUv2 .mat reader and prepare, on a small MATLAB v7.3-layout HDF5 file written here."""

import h5py
import numpy as np
import pytest
import scipy.io
import zarr

from depthcore.data import nyuv2
from depthcore.data.prepare import prepare_dataset
from depthcore.data.splits import TEST, TRAIN, VAL, read_split, write_validation_split
from depthcore.data.store import partial_path

N, H, W = 6, 12, 16
SCENES = ["bedroom_0001", "bedroom_0001", "kitchen_0002", "kitchen_0002", "office_0003", "office_0003"]


def _images():
    rng = np.random.default_rng(0)
    return {
        "rgb": rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8),
        "depth": rng.uniform(0.5, 9.0, (N, H, W)).astype(np.float32),
        "raw": rng.uniform(0.0, 9.0, (N, H, W)).astype(np.float32),
        "labels": rng.integers(0, 4, (N, H, W)).astype(np.uint16),
        "instances": rng.integers(1, 3, (N, H, W)).astype(np.uint8),
    }


def write_mat(path, data, *, skip=(), n_scenes=N):
    """A file laid out as MATLAB v7.3 stores nyu_depth_v2_labeled.mat: axes reversed, 512-byte userblock."""
    with h5py.File(path, "w", userblock_size=512) as f:
        arrays = {
            "images": data["rgb"].transpose(0, 3, 2, 1),  # (N, 3, W, H)
            "depths": data["depth"].transpose(0, 2, 1),
            "rawDepths": data["raw"].transpose(0, 2, 1),
            "labels": data["labels"].transpose(0, 2, 1),
            "instances": data["instances"].transpose(0, 2, 1),
        }
        for name, value in arrays.items():
            if name not in skip:
                f.create_dataset(name, data=value)
        if "scenes" not in skip:
            refs = f.create_dataset("scenes", (1, n_scenes), dtype=h5py.ref_dtype)
            for i, name in enumerate(SCENES[:n_scenes]):
                chars = f.create_dataset(f"#refs#/s{i}", data=np.array([[ord(c)] for c in name], dtype=np.uint16))
                refs[0, i] = chars.ref
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, written by a depthcore test")


def write_splits(path, train, test):
    scipy.io.savemat(path, {"trainNdxs": np.array(train)[:, None], "testNdxs": np.array(test)[:, None]})


@pytest.fixture
def raw(tmp_path):
    data = _images()
    write_mat(tmp_path / nyuv2.MAT_NAME, data)
    write_splits(tmp_path / nyuv2.SPLITS_NAME, [1, 2, 3, 4], [5, 6])
    return tmp_path, data


def test_reader_undoes_matlab_axis_order(raw):
    root, data = raw
    with nyuv2.LabeledMat(root / nyuv2.MAT_NAME) as mat:
        assert (len(mat), mat.height, mat.width) == (N, H, W)
        s = mat.sample(3)
        np.testing.assert_array_equal(s["rgb"], data["rgb"][3])
        np.testing.assert_array_equal(s["depth"], data["depth"][3])
        np.testing.assert_array_equal(s["depth_eval"], data["raw"][3])
        assert mat.scene_names() == SCENES


def test_instances_combine_class_and_instance_number():
    labels = np.array([[0, 1, 1], [2, 2, 1]])
    inst = np.array([[5, 1, 2], [1, 2, 1]])  # instance numbers restart per class
    ids = nyuv2.combine_instances(labels, inst)
    # (1,1) -> 1, (1,2) -> 2, (2,1) -> 3, (2,2) -> 4, unlabelled -> 0
    np.testing.assert_array_equal(ids, [[0, 1, 2], [3, 4, 1]])


def test_prepare_writes_the_contract(raw, tmp_path):
    root, data = raw
    out = prepare_dataset("nyuv2", root, tmp_path / "dataset.zarr", key=None, progress=False)
    g = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(g["rgb"][:], data["rgb"])
    np.testing.assert_array_equal(g["depth_eval"][:], data["raw"])
    assert g["instances"].dtype == np.int32 and g["instances"][:].max() <= 6
    np.testing.assert_array_equal(g["split"][:], [TRAIN] * 4 + [TEST] * 2)  # the official split file
    write_validation_split(out, tmp_path / "split.json", val_fraction=0.4, seed=0)
    split, scene = read_split(tmp_path / "split.json", N), g["scene"][:]
    np.testing.assert_array_equal(split[4:], [TEST, TEST])
    assert set(split[:4]) == {TRAIN, VAL}
    for s in np.unique(scene[:4]):  # validation is carved by whole scenes
        assert len(set(split[scene == s])) == 1
    assert g.attrs["intrinsics"] == list(nyuv2_intrinsics())
    assert g.attrs["source"] == "nyuv2" and g.attrs["depth_unit"] == "m"
    assert not partial_path(out).exists()


def nyuv2_intrinsics():
    from depthcore.geometry.frame import NYU_INTRINSICS

    return NYU_INTRINSICS


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "truncated|not a MATLAB"),
        ("missing_dataset", "lacks the dataset"),
        ("bad_split", "outside 1..6"),
        ("missing", "does not exist"),
    ],
)
def test_bad_inputs_fail_clearly_and_leave_no_output(tmp_path, damage, message):
    data = _images()
    mat = tmp_path / nyuv2.MAT_NAME
    write_mat(mat, data, skip=("rawDepths",) if damage == "missing_dataset" else ())
    write_splits(tmp_path / nyuv2.SPLITS_NAME, [1, 2, 3, 4], [5, 7] if damage == "bad_split" else [5, 6])
    if damage == "truncate":
        size = mat.stat().st_size
        with open(mat, "r+b") as fh:
            fh.truncate(size // 3)
    if damage == "missing":
        mat.unlink()
    out = tmp_path / "dataset.zarr"
    with pytest.raises(nyuv2.NYUv2Error, match=message):
        prepare_dataset("nyuv2", tmp_path, out, key=None, progress=False)
    assert not out.exists()
