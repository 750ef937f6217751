"""fetch_data, prepare and split on the synthetic source: the contract, resuming only the same work,
a raw folder holding exactly the current source, and a split carved by whole rooms."""

import numpy as np
import pytest
import zarr
from conftest import make_params

from depthcore.data import prepare as prepare_module
from depthcore.data.prepare import fetch_data, prepare_dataset
from depthcore.data.splits import TEST, TRAIN, VAL, read_split, write_validation_split
from depthcore.data.store import Store, partial_path


def _read(path):
    g = zarr.open_group(str(path), mode="r")
    return {name: g[name][:] for name in g.array_keys()}, dict(g.attrs)


def test_dataset_contract(synthetic_dataset):
    store = Store(synthetic_dataset)
    assert store.shape("rgb") == (6, 480, 640, 3) and store.shape("pair_pose") == (6, 4, 4)
    np.testing.assert_array_equal(store.read("depth"), store.read("depth_eval"))  # rendered depth is exact
    split, scene = store.read("split"), store.read("scene")
    np.testing.assert_array_equal(scene, [0, 0, 1, 1, 2, 2])
    assert set(split) == {TRAIN, TEST} and (split == TEST).sum() == 2  # one of three rooms, by the render seed
    assert store.attrs["source"] == "synthetic" and store.attrs["depth_unit"] == "m"


def test_interrupted_prepare_resumes_where_it_stopped(pipeline, tmp_path, monkeypatch):
    synthetic_dataset = pipeline.dataset
    raw = pipeline.raw
    monkeypatch.setattr(prepare_module, "PROGRESS_EVERY", 1)
    written = []
    original = zarr.Array.__setitem__

    def record(self, key, value):
        if self.path == "rgb":
            if len(written) == 3 and stop["now"]:
                raise KeyboardInterrupt("simulated kill")
            written.append(key)
        return original(self, key, value)

    stop = {"now": True}
    monkeypatch.setattr(zarr.Array, "__setitem__", record)
    out = tmp_path / "dataset.zarr"
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("synthetic", raw, out, key="same inputs", progress=False)
    assert not out.exists() and partial_path(out).exists()
    stop["now"], written[:] = False, []
    prepare_dataset("synthetic", raw, out, key="same inputs", progress=False)
    assert written == [3, 4, 5]  # images 0-2 were not read or written again
    got, want = _read(out), _read(synthetic_dataset)
    assert got[1] == want[1]
    for name in want[0]:
        np.testing.assert_array_equal(got[0][name], want[0][name], err_msg=name)

    written[:] = []  # an unfinished store of other inputs is not resumed
    stop["now"] = True
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("synthetic", raw, tmp_path / "b.zarr", key="inputs A", progress=False)
    stop["now"], written[:] = False, []
    prepare_dataset("synthetic", raw, tmp_path / "b.zarr", key="inputs B", progress=False)
    assert written == [0, 1, 2, 3, 4, 5]


def test_fetch_data_leaves_only_the_current_source_and_rerenders(tmp_path, monkeypatch):
    params = make_params({"data.synthetic.images": 3, "data.synthetic.views_per_room": 1})
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "nyu_depth_v2_labeled.mat.partial").write_bytes(b"an interrupted download of another source")
    (raw / "synthetic.zarr.partial").mkdir()  # unfinished work of another run
    rendered = []
    real = prepare_module.render_sample
    monkeypatch.setattr(prepare_module, "render_sample", lambda *a, **k: rendered.append(a[1]) or real(*a, **k))
    paths = fetch_data(params.data, raw, key=None, progress=False)
    assert [p.name for p in paths] == ["synthetic.zarr"] and sorted(p.name for p in raw.iterdir()) == ["synthetic.zarr"]
    fetch_data(params.data, raw, key=None, progress=False)
    assert rendered == [0, 1, 2] * 2  # DVC decides when to re-run (e.g. renderer code changed): it re-renders


def test_split_moves_whole_training_rooms_to_val(synthetic_dataset, tmp_path):
    out = write_validation_split(synthetic_dataset, tmp_path / "split.json", val_fraction=0.1, seed=0)
    codes = read_split(out, 6)
    official, scene = Store(synthetic_dataset).read("split"), Store(synthetic_dataset).read("scene")
    np.testing.assert_array_equal(codes == TEST, official == TEST)  # the test split is never touched
    assert (codes == VAL).sum() == 2 and (codes == TRAIN).sum() == 2
    for s in np.unique(scene):
        assert len(set(codes[scene == s])) == 1
    with pytest.raises(Exception, match="2 codes for a dataset of 6|6 codes for a dataset of 7"):
        read_split(out, 7)
