"""prepare on the synthetic source: contract, resume after an interruption, dataset access, config errors."""

import numpy as np
import pytest
import torch
import zarr

from depthcore.config import ConfigError, DataConfig
from depthcore.data import prepare as prepare_module
from depthcore.data.datasets import DepthDataset
from depthcore.data.prepare import fetch_data, prepare_dataset
from depthcore.data.store import partial_path

PARAMS = {"source": "synthetic", "synthetic": {"images": 4, "views_per_room": 2, "height": 48, "width": 64}}


def _read(path):
    g = zarr.open_group(str(path), mode="r")
    return {name: g[name][:] for name in g.array_keys()}, dict(g.attrs)


def test_interrupted_prepare_resumes_to_the_same_store(tmp_path, monkeypatch):
    cfg = DataConfig.from_params(PARAMS)
    fetch_data(cfg, tmp_path / "raw", progress=False)
    reference = prepare_dataset(cfg, tmp_path / "raw", tmp_path / "ref.zarr", progress=False)

    monkeypatch.setattr(prepare_module, "PROGRESS_EVERY", 1)
    out = tmp_path / "dataset.zarr"
    calls = {"n": 0}
    original = zarr.Array.__setitem__

    def crash_on_third_rgb(self, key, value):
        if self.path == "rgb":
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt("simulated kill")
        return original(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", crash_on_third_rgb)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(cfg, tmp_path / "raw", out, progress=False)
    assert not out.exists() and partial_path(out).exists()
    assert zarr.open_group(str(partial_path(out)), mode="r").attrs["_items_done"] == 2
    monkeypatch.setattr(zarr.Array, "__setitem__", original)

    calls["n"] = 0
    prepare_dataset(cfg, tmp_path / "raw", out, progress=False)
    assert not partial_path(out).exists()
    got, got_attrs = _read(out)
    want, want_attrs = _read(reference)
    assert got_attrs == want_attrs
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_dataset_items_and_workers(synthetic_dataset):
    train = DepthDataset(synthetic_dataset, "train", with_pair=True)
    test = DepthDataset(synthetic_dataset, "test")
    assert len(train) + len(DepthDataset(synthetic_dataset, "val")) + len(test) == 6
    item = train[0]
    assert item["rgb"].shape == (3, 480, 640) and 0 <= item["rgb"].min() and item["rgb"].max() <= 1
    assert item["depth"].shape == (1, 480, 640) and item["depth"].min() > 0.5
    assert item["pair_pose"].shape == (4, 4) and item["intrinsics"][0, 0] > 500
    loader = torch.utils.data.DataLoader(test, batch_size=1, num_workers=2)
    indices = sorted(int(b["index"]) for b in loader)
    assert indices == sorted(int(i) for i in test.indices)
    with pytest.raises(ValueError, match="valid splits"):
        DepthDataset(synthetic_dataset, "holdout")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"source": "kitti"}, r"data.source.*valid values are \['nyuv2', 'synthetic'\]"),
        ({"sourc": "nyuv2"}, r"unknown key\(s\) \['sourc'\]"),
        ({"synthetic": {"images": "many"}}, "data.synthetic.images.*integer"),
        ({"val_fraction": 1.5}, "val_fraction"),
    ],
)
def test_bad_data_params_name_the_key(params, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig.from_params(params, prefix="data")
