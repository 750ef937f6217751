"""Training samples: per-image crop-space tensors from the prepared and cached stores.

:class:`TrainingDataset` reads ``dataset.zarr`` and, where the requested keys need them,
``clip.zarr``, ``segments.zarr`` and ``zeroshot.zarr``, and returns for one image a dict holding
exactly the requested keys plus ``index``, all cropped to the DepthCLIP crop (416 x 544 on NYUv2):

- ``rgb`` 3 x h x w float32 in [0, 1]; ``depth`` 1 x h x w float32 metres, 0 = invalid
- ``clip_<layer>`` C x h/s x w/s float16 (the cached features of the image as seen)
- ``zeroshot`` 1 x h x w float32 metres; ``segments`` h x w int64 ids, 0 = none
- ``pair_rgb`` 3 x h x w, ``pair_pose`` 4 x 4 (target-to-source), ``intrinsics`` 3 x 3 (crop pixels)

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

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from depthcore.data.splits import SPLIT_CODES
from depthcore.data.store import StoreError, open_store
from depthcore.geometry import DEPTHCLIP_CROP, crop_shape, crop_tensor

CLIP_PREFIX = "clip_"
FLIPPED_SUFFIX = "_flipped"
SPATIAL_KEYS = ("rgb", "depth", "zeroshot", "segments", "pair_rgb")  # mirrored along their last axis
BASE_KEYS = ("rgb", "depth", "pair_rgb", "pair_pose", "intrinsics")
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


class TrainingDataset(Dataset):
    """Crop-space training samples of one split (see the module docstring for the keys)."""

    def __init__(
        self,
        *,
        dataset: Path | str,
        split: str,
        keys: tuple[str, ...],
        features: Path | str | None = None,
        segments: Path | str | None = None,
        zeroshot: Path | str | None = None,
        flip: str = "none",
        seed: int = 0,
        with_flipped: bool = False,
        crop: tuple[int, int, int, int] = DEPTHCLIP_CROP,
    ):
        if split not in SPLIT_CODES:
            raise ValueError(f"unknown split {split!r}; valid splits are {list(SPLIT_CODES)}")
        if flip not in FLIP_MODES:
            raise ValueError(f"unknown flip mode {flip!r}; valid modes are {list(FLIP_MODES)}")
        self.keys = tuple(dict.fromkeys(keys))
        self.layers = tuple(key.removeprefix(CLIP_PREFIX) for key in self.keys if key.startswith(CLIP_PREFIX))
        unknown = [
            k for k in self.keys if not k.startswith(CLIP_PREFIX) and k not in BASE_KEYS + ("zeroshot", "segments")
        ]
        if unknown:
            raise ValueError(f"unknown batch key(s) {unknown}")
        self.paths = {"dataset": Path(dataset)}
        needs = {
            "features": bool(self.layers),
            "segments": "segments" in self.keys,
            "zeroshot": "zeroshot" in self.keys,
        }
        for name, path in (("features", features), ("segments", segments), ("zeroshot", zeroshot)):
            if needs[name]:
                if path is None:
                    raise ValueError(f"batch keys {list(self.keys)} need the {name} store, but none was given")
                self.paths[name] = Path(path)
        self.required = {
            "dataset": ("split", "rgb", "depth") + (("pair_rgb", "pair_pose") if "pair_rgb" in self.keys else ()),
            "features": self.layers,
            "segments": ("labels",),
            "zeroshot": ("depth",),
        }
        groups = {name: open_store(path, required=self.required[name]) for name, path in self.paths.items()}
        n = int(groups["dataset"]["split"].shape[0])
        for name, group in groups.items():
            first = group[self.required[name][0]] if name != "dataset" else group["rgb"]
            if int(first.shape[0]) != n:
                raise StoreError(
                    f"{self.paths[name]} holds {first.shape[0]} images but {self.paths['dataset']} holds {n}: "
                    "the store was built from another dataset; rerun `dvc repro`"
                )
        self.indices = np.flatnonzero(np.asarray(groups["dataset"]["split"][:]) == SPLIT_CODES[split])
        self.split = split
        self.flip = flip
        self.seed = int(seed)
        self.epoch = 0
        self.with_flipped = with_flipped
        self.crop = crop
        fx, fy, cx, cy = groups["dataset"].attrs.get("intrinsics", (0.0, 0.0, 0.0, 0.0))
        top, _, left, _ = crop
        self.intrinsics = torch.tensor([[fx, 0, cx - left], [0, fy, cy - top], [0, 0, 1]], dtype=torch.float32)
        self.image_size = crop_shape(crop)
        self._groups: dict | None = None

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_groups"] = None  # each worker re-opens the stores itself (read-only)
        return state

    @property
    def groups(self) -> dict:
        if self._groups is None:
            self._groups = {name: open_store(path) for name, path in self.paths.items()}
        return self._groups

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
        g = self.groups
        flipped = self.is_flipped(i)
        sample: dict[str, torch.Tensor] = {"index": torch.tensor(i, dtype=torch.int64)}
        for key in self.keys:
            if key.startswith(CLIP_PREFIX):
                layer = key.removeprefix(CLIP_PREFIX)
                views = np.asarray(g["features"][layer][i])  # 2 x C x h x w: image, mirrored image
                sample[key] = torch.from_numpy(views[int(flipped)])
                if self.with_flipped:
                    sample[key + FLIPPED_SUFFIX] = torch.from_numpy(views[1 - int(flipped)])
            elif key in ("rgb", "pair_rgb"):
                rgb = crop_tensor(np.asarray(g["dataset"][key][i]).transpose(2, 0, 1), self.crop)
                sample[key] = torch.from_numpy(np.ascontiguousarray(rgb)).float().div_(255.0)
            elif key == "depth":
                sample[key] = _crop_map(g["dataset"]["depth"][i], self.crop)[None]
            elif key == "zeroshot":
                sample[key] = _crop_map(g["zeroshot"]["depth"][i], self.crop)[None]
            elif key == "segments":
                labels = crop_tensor(np.asarray(g["segments"]["labels"][i]), self.crop)
                sample[key] = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))
            elif key == "pair_pose":
                sample[key] = torch.from_numpy(np.asarray(g["dataset"]["pair_pose"][i], dtype=np.float32))
            elif key == "intrinsics":
                sample[key] = self.intrinsics.clone()
        if flipped:  # features were already taken from the mirrored view
            sample = mirror_batch({k: v for k, v in sample.items() if not k.startswith(CLIP_PREFIX)}) | {
                k: v for k, v in sample.items() if k.startswith(CLIP_PREFIX)
            }
        return sample


def _crop_map(values, crop: tuple[int, int, int, int]) -> torch.Tensor:
    """H x W store slice -> h x w float32 tensor of the crop."""
    return torch.from_numpy(np.ascontiguousarray(crop_tensor(np.asarray(values, dtype=np.float32), crop)))
