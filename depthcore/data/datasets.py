"""Torch datasets over the zarr stores.

Stores are opened read-only and lazily in each process (the open group is dropped when the dataset
is pickled into a DataLoader worker and re-opened there), so any number of workers can read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from depthcore.data.splits import SPLIT_CODES
from depthcore.data.store import open_store

DATASET_ARRAYS = ("rgb", "depth", "depth_eval", "instances", "split", "scene")


class DepthDataset(Dataset):
    """Images of one split of ``dataset.zarr``.

    Each item is a dict of tensors:

    - ``index``: () int64, the image's row in the store
    - ``rgb``: 3 x H x W float32 in [0, 1]
    - ``depth``: 1 x H x W float32, metres, 0 = invalid (training target)
    - ``depth_eval``: 1 x H x W float32, metres, 0 = invalid (evaluation ground truth)
    - ``instances``: H x W int64 object ids, 0 = none
    - with ``with_pair=True`` (stores that have second views): ``pair_rgb`` 3 x H x W float32 in
      [0, 1] and ``pair_pose`` 4 x 4 float32 (target-to-source), plus ``intrinsics`` 3 x 3 float32.
    """

    def __init__(self, path: Path | str, split: str | None = None, *, with_pair: bool = False):
        self.path = Path(path)
        group = open_store(self.path, required=DATASET_ARRAYS + (("pair_rgb", "pair_pose") if with_pair else ()))
        codes = np.asarray(group["split"][:])
        if split is None:
            self.indices = np.arange(codes.size)
        else:
            if split not in SPLIT_CODES:
                raise ValueError(f"unknown split {split!r}; valid splits are {list(SPLIT_CODES)}")
            self.indices = np.flatnonzero(codes == SPLIT_CODES[split])
        self.split = split
        self.with_pair = with_pair
        self.attrs = dict(group.attrs)
        fx, fy, cx, cy = self.attrs["intrinsics"]
        self.intrinsics = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float32)
        self._group = None

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_group"] = None  # each worker re-opens the store itself
        return state

    @property
    def group(self):
        if self._group is None:
            self._group = open_store(self.path)
        return self._group

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        i = int(self.indices[item])
        g = self.group
        sample = {
            "index": torch.tensor(i, dtype=torch.int64),
            "rgb": _image(g["rgb"][i]),
            "depth": torch.from_numpy(np.asarray(g["depth"][i], dtype=np.float32))[None],
            "depth_eval": torch.from_numpy(np.asarray(g["depth_eval"][i], dtype=np.float32))[None],
            "instances": torch.from_numpy(np.asarray(g["instances"][i]).astype(np.int64)),
        }
        if self.with_pair:
            sample["pair_rgb"] = _image(g["pair_rgb"][i])
            sample["pair_pose"] = torch.from_numpy(np.asarray(g["pair_pose"][i], dtype=np.float32))
            sample["intrinsics"] = self.intrinsics.clone()
        return sample


def _image(rgb: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
