"""Shared fixtures: a tiny synthetic dataset rendered once per test session."""

from __future__ import annotations

import pytest

from depthcore.config import DataConfig
from depthcore.data.prepare import fetch_data, prepare_dataset

SYNTHETIC_IMAGES = 6
SYNTHETIC_PARAMS = {"source": "synthetic", "synthetic": {"images": SYNTHETIC_IMAGES, "views_per_room": 2}}


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """Path of a prepared 6-image synthetic dataset.zarr (3 rooms: train / val / test), 480 x 640."""
    root = tmp_path_factory.mktemp("synthetic")
    cfg = DataConfig.from_params(SYNTHETIC_PARAMS)
    fetch_data(cfg, root / "raw", progress=False)
    return prepare_dataset(cfg, root / "raw", root / "dataset.zarr", progress=False)
