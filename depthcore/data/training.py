"""Training samples: per-image crop-space tensors from the prepared and cached stores.

:class:`TrainingDataset` reads, for the dataset rows it is given, exactly the requested keys from
the stores that hold them, all cropped to the DepthCLIP crop (416 x 544 on NYUv2), plus ``index``:

- ``rgb`` 3 x h x w float32 in [0, 1]; ``depth`` 1 x h x w float32 metres, 0 = invalid (``dataset``)
- ``clip_<layer>`` C x h/s x w/s float16, the cached features of the image as seen (``features``)
- ``zeroshot`` 1 x h x w float32 metres (``zeroshot``); ``segments`` h x w int64 ids, 0 = none (``segments``)
- ``pair_rgb`` 3 x h x w, ``pair_pose`` 4 x 4 (target-to-source), ``pair_valid`` h x w bool (``pairs``);
  ``intrinsics`` 3 x 3 (crop pixels, from the dataset)

``flip``: ``"none"`` returns every image as stored; ``"random"`` mirrors an image with probability
1/2, drawn from (seed, epoch, index) so the choice is the same in any worker and after a resume
(call :meth:`set_epoch`). A mirrored sample is consistent throughout: RGB, targets, zero-shot depth,
segments and the second view are flipped, the CLIP features are the cached features *of the flipped
image* (view 1 of the store), the pose is mirrored (x -> -x) and the principal point reflected.
With ``with_flipped=True`` each ``clip_<layer>`` also comes as ``clip_<layer>_flipped`` (for flip
averaging at prediction time, see :func:`mirror_batch`).

Stores are opened read-only and lazily in each process, so the dataset is safe in DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from depthcore.data.store import Store, StoreError
from depthcore.geometry import DEPTHCLIP_CROP, crop_shape, crop_tensor

CLIP_PREFIX = "clip_"
FLIPPED_SUFFIX = "_flipped"
SPATIAL_KEYS = ("rgb", "depth", "zeroshot", "segments", "pair_rgb", "pair_valid")  # mirrored along the last axis
FLIP_MODES = ("none", "random")
FLIP = np.diag([-1.0, 1.0, 1.0, 1.0]).astype(np.float32)  # x -> -x in camera coordinates


def mirror_pose(pose: torch.Tensor) -> torch.Tensor:
    """4 x 4 rigid transform between two cameras -> the same motion seen in both images mirrored."""
    flip = torch.as_tensor(FLIP, dtype=pose.dtype, device=pose.device)
    return flip @ pose @ flip


def mirror_intrinsics(k: torch.Tensor, width: int) -> torch.Tensor:
    """3 x 3 K of an image ``width`` pixels wide -> K of its mirror image (cx -> width - 1 - cx)."""
    k = k.clone()
    k[..., 0, 2] = width - 1 - k[..., 0, 2]
    return k


def mirror_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch of the mirrored images, built from a batch loaded with ``with_flipped=True``.

    Spatial tensors are flipped along their last axis; ``clip_<layer>`` is replaced by
    ``clip_<layer>_flipped`` (the features of the mirrored image, computed by CLIP, not flipped maps).
    Predictions on it are flipped back and averaged with :func:`depthcore.geometry.flip_average`.
    """
    out = {}
    widths = [batch[key].shape[-1] for key in SPATIAL_KEYS if key in batch]
    for key, value in batch.items():
        if key.startswith(CLIP_PREFIX):
            if key.endswith(FLIPPED_SUFFIX):
                out[key.removesuffix(FLIPPED_SUFFIX)] = value
            elif key + FLIPPED_SUFFIX not in batch:
                raise KeyError(f"{key} has no {key + FLIPPED_SUFFIX}: load the batch with with_flipped=True")
        elif key in SPATIAL_KEYS:
            out[key] = value.flip(-1)
        elif key == "pair_pose":
            out[key] = mirror_pose(value)
        elif key == "intrinsics":
            if not widths:
                raise KeyError("mirroring intrinsics needs an image in the batch to know its width")
            out[key] = mirror_intrinsics(value, widths[0])
        else:
            out[key] = value
    return out


STORE_OF = {
    "rgb": "dataset",
    "depth": "dataset",
    "intrinsics": "dataset",
    "zeroshot": "zeroshot",
    "segments": "segments",
    "pair_rgb": "pairs",
    "pair_pose": "pairs",
    "pair_valid": "pairs",
}
ARRAY_OF = {"zeroshot": "depth", "segments": "labels", "intrinsics": "rgb"}


def store_of(key: str) -> str:
    """Which store a batch key is read from: dataset, features, zeroshot or segments."""
    if key.startswith(CLIP_PREFIX):
        return "features"
    if key not in STORE_OF:
        raise ValueError(f"unknown batch key {key!r}; valid keys are {sorted(STORE_OF)} and clip_<layer>")
    return STORE_OF[key]


class TrainingDataset(Dataset):
    """Crop-space samples of the dataset rows ``indices`` (see the module docstring for the keys).

    stores: store name (dataset, features, zeroshot, segments) -> path; only those the keys need are read.
    """

    def __init__(
        self,
        *,
        stores: Mapping[str, Path | str],
        indices: np.ndarray,
        keys: tuple[str, ...],
        flip: str = "none",
        seed: int = 0,
        with_flipped: bool = False,
        crop: tuple[int, int, int, int] = DEPTHCLIP_CROP,
    ):
        if flip not in FLIP_MODES:
            raise ValueError(f"unknown flip mode {flip!r}; valid modes are {list(FLIP_MODES)}")
        self.keys = tuple(dict.fromkeys(keys))
        needed = {"dataset"} | {store_of(key) for key in self.keys}
        missing = sorted(needed - set(stores))
        if missing:
            raise ValueError(f"batch keys {list(self.keys)} need the store(s) {missing}, which were not given")
        required: dict[str, set[str]] = {name: set() for name in needed}
        for key in self.keys:
            required[store_of(key)].add(
                key.removeprefix(CLIP_PREFIX) if key.startswith(CLIP_PREFIX) else ARRAY_OF.get(key, key)
            )
        self.stores = {name: Store(stores[name], required=tuple(sorted(required[name]))) for name in needed}
        n = self.stores["dataset"].shape("rgb")[0]
        for name, store in self.stores.items():
            for array in required[name]:
                if store.shape(array)[0] != n:
                    raise StoreError(
                        f"{store.path} holds {store.shape(array)[0]} images but {self.stores['dataset'].path} holds "
                        f"{n}: the store was built from another dataset; rerun `dvc repro`"
                    )
        self.indices = np.asarray(indices, dtype=np.int64)
        self.flip = flip
        self.seed = int(seed)
        self.epoch = 0
        self.with_flipped = with_flipped
        self.crop = crop
        fx, fy, cx, cy = self.stores["dataset"].attrs.get("intrinsics", (0.0, 0.0, 0.0, 0.0))
        top, _, left, _ = crop
        self.intrinsics = torch.tensor([[fx, 0, cx - left], [0, fy, cy - top], [0, 0, 1]], dtype=torch.float32)
        self.image_size = crop_shape(crop)

    def __len__(self) -> int:
        return int(self.indices.size)

    def set_epoch(self, epoch: int) -> None:
        """Select the random flips of ``epoch`` (call before iterating)."""
        self.epoch = int(epoch)

    def is_flipped(self, index: int) -> bool:
        """Whether image ``index`` (a dataset row) is mirrored in the current epoch."""
        if self.flip == "none":
            return False
        return bool(np.random.default_rng([self.seed, self.epoch, int(index)]).random() < 0.5)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        i = int(self.indices[item])
        flipped = self.is_flipped(i)
        sample: dict[str, torch.Tensor] = {"index": torch.tensor(i, dtype=torch.int64)}
        for key in self.keys:
            store = self.stores[store_of(key)]
            if key.startswith(CLIP_PREFIX):
                views = store.read(key.removeprefix(CLIP_PREFIX), i)  # 2 x C x h x w: image, mirrored image
                sample[key] = torch.from_numpy(views[int(flipped)])
                if self.with_flipped:
                    sample[key + FLIPPED_SUFFIX] = torch.from_numpy(views[1 - int(flipped)])
            elif key in ("rgb", "pair_rgb"):
                rgb = crop_tensor(store.read(key, i).transpose(2, 0, 1), self.crop)
                sample[key] = torch.from_numpy(np.ascontiguousarray(rgb)).float().div_(255.0)
            elif key in ("depth", "zeroshot"):
                sample[key] = _crop_map(store.read(ARRAY_OF.get(key, key), i), self.crop)[None]
            elif key == "segments":
                labels = crop_tensor(store.read("labels", i), self.crop)
                sample[key] = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))
            elif key == "pair_pose":
                sample[key] = torch.from_numpy(store.read(key, i).astype(np.float32))
            elif key == "pair_valid":
                sample[key] = torch.from_numpy(np.ascontiguousarray(crop_tensor(store.read(key, i), self.crop)))
            elif key == "intrinsics":
                sample[key] = self.intrinsics.clone()
        if flipped:  # features were already taken from the mirrored view
            sample = mirror_batch({k: v for k, v in sample.items() if not k.startswith(CLIP_PREFIX)}) | {
                k: v for k, v in sample.items() if k.startswith(CLIP_PREFIX)
            }
        return sample


def _crop_map(values: np.ndarray, crop: tuple[int, int, int, int]) -> torch.Tensor:
    """H x W store slice -> h x w float32 tensor of the crop."""
    return torch.from_numpy(np.ascontiguousarray(crop_tensor(np.asarray(values, dtype=np.float32), crop)))
