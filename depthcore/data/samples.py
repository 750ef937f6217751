"""Training samples: per-image crop-space tensors from the prepared and cached stores.

:class:`TrainingDataset` reads, for the dataset rows it is given, exactly the requested keys from
the stores that hold them, all cropped to the DepthCLIP crop (416 x 544 on NYUv2), plus ``index``:

- ``rgb`` 3 x h x w float32 in [0, 1]; ``depth`` 1 x h x w float32 metres, 0 = invalid (``dataset``)
- ``clip_<layer>`` C x h/s x w/s float16, the cached features of the image as seen (``features``)
- ``zeroshot`` 1 x h x w float32 metres (``zeroshot``); ``segments`` h x w int64 ids, 0 = none (``segments``)
- ``pair_rgb`` 3 x h x w, ``pair_pose`` 4 x 4 (target-to-source), ``pair_valid`` h x w bool (``pairs``);
  ``intrinsics`` 3 x 3 (crop pixels, from the dataset)

``flip``: ``"none"`` returns every image as stored; ``"random"`` mirrors an image with probability 1/2,
drawn from the run's ``flip`` stream at (phase, epoch, index) (:mod:`depthcore.seeding`), so the choice is
the same in any worker and after a resume (index the dataset with an :class:`EpochItem`, or call
:meth:`set_epoch`). A mirrored sample is consistent
throughout: RGB, targets, zero-shot depth, segments and the second view are flipped, the CLIP features are
the cached features *of the flipped image* (view 1 of the store), the pose is mirrored (x -> -x) and the
principal point reflected. With ``with_flipped=True`` each ``clip_<layer>`` also comes as
``clip_<layer>_flipped`` (for flip averaging, :func:`depthcore.data.batch.mirror_batch`). Without it only the
view a sample uses is read: ``backbone.zarr`` stores each view in its own chunk, so the other is never decompressed.

``random_crop=True`` (training with live features, :mod:`depthcore.features.live`): each sample is a crop of
the crop's size (416 x 544) at an offset drawn uniformly from the run's ``crop`` stream at (phase, epoch, index),
DINOv2's RandomCrop of the 480 x 640 frame; every per-pixel key (``rgb``, ``backbone_rgb``, ``depth``,
``zeroshot``, ``segments``, ``pair_rgb``, ``pair_valid``) is the same slice of its frame and ``intrinsics`` the
principal point moved by the offset. Only without ``clip_<layer>`` keys: cached features exist for the fixed crop
alone. ``backbone_rgb`` is the crop unmirrored (scaled exactly as :func:`depthcore.features.backbone.crop_rgb`)
and ``backbone_flip`` the sample's flip, so the backbone computes the mirrored view as the features stage does.

Stores are opened read-only and lazily in each process, so the dataset is safe in DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from depthcore.data.batch import (
    ARRAY_OF,
    BACKBONE_FLIP,
    BACKBONE_RGB,
    CLIP_PREFIX,
    FLIPPED_SUFFIX,
    mirror_batch,
    store_of,
)
from depthcore.data.store import Store, StoreError, read_items
from depthcore.features.backbone import PIXEL_SCALE
from depthcore.geometry.frame import DEPTHCLIP_CROP, crop_shape, crop_tensor
from depthcore.seeding import numpy_generator

FLIP_MODES = ("none", "random")


class EpochItem(NamedTuple):
    """An item of the dataset as drawn in (training phase ``phase``, ``epoch``): its flip is that epoch's."""

    item: int
    phase: int
    epoch: int


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
        random_crop: bool = False,
    ):
        if flip not in FLIP_MODES:
            raise ValueError(f"unknown flip mode {flip!r}; valid modes are {list(FLIP_MODES)}")
        self.keys = tuple(dict.fromkeys(keys))
        if random_crop and any(key.startswith(CLIP_PREFIX) for key in self.keys):
            raise ValueError(
                "random_crop needs live features: cached clip_<layer> keys exist for the fixed crop only; load "
                f"{BACKBONE_RGB} and {BACKBONE_FLIP} instead (depthcore.features.live.loader_keys)"
            )
        needed = {"dataset"} | {store_of(key) for key in self.keys}
        missing = sorted(needed - set(stores))
        if missing:
            raise ValueError(f"batch keys {list(self.keys)} need the store(s) {missing}, which were not given")
        required: dict[str, set[str]] = {name: set() for name in needed}
        for key in self.keys:
            required[store_of(key)].add(stored_array(key))
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
        self.epoch = self.phase = 0
        self.with_flipped = with_flipped
        self.crop = crop
        self.random_crop = random_crop
        self.frame_size = tuple(self.stores["dataset"].shape("rgb")[1:3])
        self.camera = self.stores["dataset"].attrs.get("intrinsics", (0.0, 0.0, 0.0, 0.0))  # fx, fy, cx, cy
        self.intrinsics = self.intrinsics_of(crop)
        self.image_size = crop_shape(crop)

    def __len__(self) -> int:
        return int(self.indices.size)

    def set_epoch(self, epoch: int, phase: int = 0) -> None:
        """Select the random flips of ``epoch`` of training phase ``phase`` (call before iterating)."""
        self.epoch, self.phase = int(epoch), int(phase)

    def is_flipped(self, index: int, phase: int | None = None, epoch: int | None = None) -> bool:
        """Whether image ``index`` (a dataset row) is mirrored in (``phase``, ``epoch``), by default the current
        ones of :meth:`set_epoch` (the run's ``flip`` stream)."""
        if self.flip == "none":
            return False
        phase, epoch = self.phase if phase is None else phase, self.epoch if epoch is None else epoch
        return bool(numpy_generator(self.seed, "flip", phase, epoch, int(index)).random() < 0.5)

    def intrinsics_of(self, crop: tuple[int, int, int, int]) -> torch.Tensor:
        """3 x 3 intrinsics in the pixels of ``crop`` (top, bottom, left, right of the frame)."""
        fx, fy, cx, cy = self.camera
        top, _, left, _ = crop
        return torch.tensor([[fx, 0, cx - left], [0, fy, cy - top], [0, 0, 1]], dtype=torch.float32)

    def crop_of(self, index: int, phase: int | None = None, epoch: int | None = None) -> tuple[int, int, int, int]:
        """The crop (top, bottom, left, right) of image ``index`` (a dataset row) in (``phase``, ``epoch``): the
        fixed crop, or with ``random_crop`` one of its size at an offset drawn from the run's ``crop`` stream."""
        if not self.random_crop:
            return self.crop
        phase, epoch = self.phase if phase is None else phase, self.epoch if epoch is None else epoch
        (height, width), (frame_h, frame_w) = self.image_size, self.frame_size
        rng = numpy_generator(self.seed, "crop", phase, epoch, int(index))
        top, left = (int(v) for v in rng.integers(0, (frame_h - height + 1, frame_w - width + 1)))
        return top, top + height, left, left + width

    def __getitem__(self, item: int | EpochItem) -> dict[str, torch.Tensor]:
        when = (item.phase, item.epoch) if isinstance(item, EpochItem) else (None, None)
        i = int(self.indices[item.item if isinstance(item, EpochItem) else item])
        flipped = self.is_flipped(i, *when)
        crop = self.crop_of(i, *when)
        arrays = self._read(i, flipped)
        sample = sample_from_arrays(
            arrays,
            self.keys,
            crop=crop,
            intrinsics=self.intrinsics_of(crop),
            flipped=flipped,
            with_flipped=self.with_flipped,
        )
        return {"index": torch.tensor(i, dtype=torch.int64)} | sample

    def _read(self, i: int, flipped: bool) -> dict[str, Any]:
        """Batch key -> the stored array of dataset row ``i`` (all read at once, :func:`read_items`); of a CLIP
        layer only the view the sample uses (``[view 0, None]`` or ``[None, view 1]``) unless ``with_flipped``
        needs both."""
        keys = [key for key in self.keys if key not in ("intrinsics", BACKBONE_FLIP)]
        one_view = [key.startswith(CLIP_PREFIX) and not self.with_flipped for key in keys]
        requests = [
            (self.stores[store_of(key)], stored_array(key), i, int(flipped) if single else None)
            for key, single in zip(keys, one_view, strict=True)
        ]
        arrays: dict[str, Any] = {}
        for key, single, value in zip(keys, one_view, read_items(requests), strict=True):
            if single:
                value = [None, value] if flipped else [value, None]
            arrays[key] = value
        return arrays


def stored_array(key: str) -> str:
    """The array of its store (:func:`depthcore.data.batch.store_of`) that batch key ``key`` is read from."""
    return key.removeprefix(CLIP_PREFIX) if key.startswith(CLIP_PREFIX) else ARRAY_OF.get(key, key)


def sample_from_arrays(
    arrays: Mapping[str, np.ndarray],
    keys: tuple[str, ...],
    *,
    crop: tuple[int, int, int, int] = DEPTHCLIP_CROP,
    intrinsics: torch.Tensor | None = None,
    flipped: bool = False,
    with_flipped: bool = False,
) -> dict[str, torch.Tensor]:
    """One sample (the module docstring's keys, crop-space) from one image's arrays as its stores hold them.

    arrays: batch key -> the stored array of one image: ``rgb`` / ``pair_rgb`` H x W x 3 uint8, ``depth`` /
    ``zeroshot`` H x W metres, ``segments`` H x W int labels, ``pair_valid`` H x W bool, ``pair_pose`` 4 x 4,
    ``clip_<layer>`` 2 x C x h x w (the image's features, then its mirror image's; a view the sample does not
    use may be None). ``intrinsics`` (3 x 3, crop
    pixels) for the ``intrinsics`` key. ``flipped``: the mirrored sample (features from view 1). Shared by
    :class:`TrainingDataset` and live prediction on new images (:mod:`depthcore.inference`), so both build the
    same tensors.
    """
    sample: dict[str, torch.Tensor] = {}
    for key in keys:
        if key.startswith(CLIP_PREFIX):
            views = arrays[key]  # 2 x C x h x w: image, mirrored image
            sample[key] = torch.from_numpy(np.ascontiguousarray(views[int(flipped)]))
            if with_flipped:
                sample[key + FLIPPED_SUFFIX] = torch.from_numpy(np.ascontiguousarray(views[1 - int(flipped)]))
        elif key == BACKBONE_RGB:  # as crop_rgb scales it, so the backbone sees the features stage's input
            rgb = crop_tensor(np.asarray(arrays[key]).transpose(2, 0, 1), crop)
            sample[key] = torch.from_numpy(np.ascontiguousarray(rgb)).float() * PIXEL_SCALE
        elif key == BACKBONE_FLIP:
            sample[key] = torch.tensor(flipped)
        elif key in ("rgb", "pair_rgb"):
            rgb = crop_tensor(np.asarray(arrays[key]).transpose(2, 0, 1), crop)
            sample[key] = torch.from_numpy(np.ascontiguousarray(rgb)).float().div_(255.0)
        elif key in ("depth", "zeroshot"):
            sample[key] = _crop_map(arrays[key], crop)[None]
        elif key == "segments":
            labels = crop_tensor(np.asarray(arrays[key]), crop)
            sample[key] = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))
        elif key == "pair_pose":
            sample[key] = torch.from_numpy(np.asarray(arrays[key]).astype(np.float32))
        elif key == "pair_valid":
            sample[key] = torch.from_numpy(np.ascontiguousarray(crop_tensor(np.asarray(arrays[key]), crop)))
        elif key == "intrinsics":
            if intrinsics is None:
                raise ValueError("the intrinsics key needs the crop's intrinsics (3 x 3)")
            sample[key] = intrinsics.clone()
    if flipped:  # features were already taken from the mirrored view
        sample = mirror_batch({k: v for k, v in sample.items() if not k.startswith(CLIP_PREFIX)}) | {
            k: v for k, v in sample.items() if k.startswith(CLIP_PREFIX)
        }
    return sample


def _crop_map(values: np.ndarray, crop: tuple[int, int, int, int]) -> torch.Tensor:
    """H x W store slice -> h x w float32 tensor of the crop."""
    return torch.from_numpy(np.ascontiguousarray(crop_tensor(np.asarray(values, dtype=np.float32), crop)))
