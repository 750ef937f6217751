"""The batch contract: the keys a training batch may hold, which store each is read from, and the mirrored batch.

A batch is a dict of crop-space tensors (see :mod:`depthcore.data.samples`): ``rgb``, ``depth``, ``intrinsics``
(dataset), ``clip_<layer>`` (features), ``zeroshot``, ``segments``, ``pair_rgb`` / ``pair_pose`` / ``pair_valid``
(pairs), plus ``index``. Adapters and losses declare the keys they read; the loader reads exactly those.

With live features (:mod:`depthcore.features.live`) the loader reads no ``clip_<layer>``: it gives ``backbone_rgb``
(the crop as the backbone sees it, never mirrored) and ``backbone_flip`` (whether the sample is mirrored), from
which the frozen backbone computes the ``clip_<layer>`` keys on the batch's device.
"""

from __future__ import annotations

import torch

from depthcore.geometry.camera import mirror_intrinsics, mirror_pose

CLIP_PREFIX = "clip_"
FLIPPED_SUFFIX = "_flipped"
BACKBONE_RGB = "backbone_rgb"  # live features: 3 x h x w float32 in [0, 1], the crop unmirrored (not spatial)
BACKBONE_FLIP = "backbone_flip"  # live features: () bool, whether the sample (and so its features) is mirrored
SPATIAL_KEYS = ("rgb", "depth", "zeroshot", "segments", "pair_rgb", "pair_valid")  # mirrored along the last axis


def mirror_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch of the mirrored images, built from a batch loaded with ``with_flipped=True``.

    Spatial tensors are flipped along their last axis; ``clip_<layer>`` is replaced by
    ``clip_<layer>_flipped`` (the features of the mirrored image, computed by CLIP, not flipped maps).
    Predictions on it are flipped back and averaged with :func:`depthcore.geometry.frame.flip_average`.
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
    BACKBONE_RGB: "dataset",
    BACKBONE_FLIP: "dataset",
}
ARRAY_OF = {"zeroshot": "depth", "segments": "labels", "intrinsics": "rgb", BACKBONE_RGB: "rgb", BACKBONE_FLIP: "rgb"}


def store_paths(paths) -> dict:
    """Store name (as :func:`store_of` names them) -> its path in ``paths`` (:class:`depthcore.config.paths.Paths`)."""
    return {
        "dataset": paths.dataset,
        "features": paths.features,
        "zeroshot": paths.zeroshot,
        "segments": paths.segments,
        "pairs": paths.pairs,
    }


LIVE_KEYS = (BACKBONE_RGB, BACKBONE_FLIP)


def loader_keys(keys: tuple[str, ...], *, live: bool) -> tuple[str, ...]:
    """The keys the loader reads for the batch keys ``keys``: with ``live`` features every ``clip_<layer>`` key is
    replaced by the backbone's input (``backbone_rgb``, ``backbone_flip``), which
    :class:`depthcore.features.live.LiveFeatures` computes them from."""
    if not live or not any(key.startswith(CLIP_PREFIX) for key in keys):
        return tuple(keys)
    return tuple(key for key in keys if not key.startswith(CLIP_PREFIX)) + LIVE_KEYS


def store_of(key: str) -> str:
    """Which store a batch key is read from: dataset, features, zeroshot or segments."""
    if key.startswith(CLIP_PREFIX):
        return "features"
    if key not in STORE_OF:
        raise ValueError(f"unknown batch key {key!r}; valid keys are {sorted(STORE_OF)} and clip_<layer>")
    return STORE_OF[key]
