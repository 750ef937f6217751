"""Cached multi-scale CLIP features: ``dataset.zarr`` -> ``clip.zarr`` (the clip_features stage).

For every image: crop to the DepthCLIP input (rows 56:472, cols 60:604 -> 416 x 544), scale to
[0, 1], normalise with ImageNet mean / std (DepthCLIP's choice, not CLIP's), run the frozen backbone
on the image and on its horizontal mirror image, and store each layer in ``clip.cache_layers`` as
``<layer>`` (N, 2, C, h, w) float16 (index 1 of axis 1 = the mirrored image, its features not
flipped back). One image per chunk, byte-shuffled zstd (Blosc), written in batches at
``clip.zarr.partial`` and renamed when complete; a rerun resumes at the first unfinished batch and
gives the same store as an uninterrupted run (batches always start at multiples of the batch size).

The attrs record everything the features depend on; :func:`check_clip_features` refuses a store
written for another model, weights, crop or normalisation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from zarr.codecs import BloscCodec

from depthcore.config import ClipConfig, plain
from depthcore.data.store import ResumableStore, StoreError, open_store
from depthcore.device import autocast, default_device
from depthcore.geometry import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_WIDTH, crop_shape, crop_tensor
from depthcore.models.clip_backbone import ClipBackbone, weights_tag

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIXEL_SCALE = 1.0 / 255.0
FEATURES_VERSION = 1
FEATURE_DTYPE = np.float16
# zstd on byte-shuffled float16 (Blosc): ~15 % smaller than plain zstd on ReLU feature maps.
FEATURE_COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=2)
N_VIEWS = 2  # the image and its horizontal mirror image


def normalisation_attrs() -> dict[str, Any]:
    """How input pixels were turned into network input (recorded in the store's attrs)."""
    return {"scale": PIXEL_SCALE, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "space": "RGB"}


def preprocess(rgb: torch.Tensor | np.ndarray) -> torch.Tensor:
    """B x 480 x 640 x 3 uint8 RGB -> B x 3 x 416 x 544 float32 network input.

    Order: crop (DEPTHCLIP_CROP), scale to [0, 1], subtract the ImageNet mean, divide by its std.
    """
    rgb = torch.as_tensor(rgb)
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or tuple(rgb.shape[1:3]) != (NYU_HEIGHT, NYU_WIDTH):
        raise ValueError(f"expected B x {NYU_HEIGHT} x {NYU_WIDTH} x 3 RGB images, got {tuple(rgb.shape)}")
    x = crop_tensor(rgb.permute(0, 3, 1, 2)).float() * PIXEL_SCALE
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device)[None, :, None, None]
    return (x - mean) / std


def feature_shapes(backbone: ClipBackbone, layers: tuple[str, ...]) -> dict[str, tuple[int, int, int]]:
    """(C, h, w) of each layer for the 416 x 544 DepthCLIP input."""
    height, width = crop_shape(DEPTHCLIP_CROP)
    out = {}
    for name in layers:
        spec = backbone.layer_specs[name]
        out[name] = (spec.channels, height // spec.stride, width // spec.stride)
    return out


def features_attrs(
    backbone: ClipBackbone, cfg: ClipConfig, *, weights_sha256: str | None, layers: tuple[str, ...]
) -> dict[str, Any]:
    """The attrs of a features store: what the features depend on and how each layer is laid out."""
    shapes = feature_shapes(backbone, layers)
    return {
        "version": FEATURES_VERSION,
        "model": cfg.model,
        "weights": weights_tag(cfg),
        "weights_sha256": weights_sha256,
        "crop": list(DEPTHCLIP_CROP),
        "input_size": list(crop_shape(DEPTHCLIP_CROP)),
        "normalisation": normalisation_attrs(),
        "views": ["image", "horizontally flipped image (features not flipped back)"],
        "layers": {
            name: {
                "channels": backbone.layer_specs[name].channels,
                "stride": backbone.layer_specs[name].stride,
                "shape": list(shapes[name]),
            }
            for name in layers
        },
    }


def _dataset_fingerprint(dataset) -> str:
    """Hash of the dataset's attrs and rgb layout (changes when the dataset is rebuilt differently)."""
    described = {"attrs": dict(dataset.attrs), "rgb": [list(dataset["rgb"].shape), str(dataset["rgb"].dtype)]}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def extract_clip_features(
    dataset_path: Path | str,
    out: Path | str,
    *,
    backbone: ClipBackbone,
    cfg: ClipConfig,
    weights_sha256: str | None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> Path:
    """Write ``out`` (clip.zarr) with the features of every image of ``dataset_path``; return ``out``.

    Runs on ``device`` (default: CUDA with float16 autocast when available, else CPU float32).
    """
    dataset = open_store(dataset_path, required=("rgb",))
    n = int(dataset["rgb"].shape[0])
    if tuple(dataset["rgb"].shape[1:]) != (NYU_HEIGHT, NYU_WIDTH, 3):
        raise StoreError(f"{dataset_path}: rgb is {dataset['rgb'].shape}, expected (N, {NYU_HEIGHT}, {NYU_WIDTH}, 3)")
    device = default_device(device)
    layers = tuple(cfg.cache_layers)
    attrs = features_attrs(backbone, cfg, weights_sha256=weights_sha256, layers=layers)
    fingerprint = {**attrs, "batch_size": cfg.batch_size, "dataset": _dataset_fingerprint(dataset), "n": n}
    store = ResumableStore(out, fingerprint=fingerprint)
    arrays = {}
    for name, (c, h, w) in feature_shapes(backbone, layers).items():
        shape = (n, N_VIEWS, c, h, w)
        if name not in store.group:
            store.group.create_array(
                name=name,
                shape=shape,
                chunks=(1, *shape[1:]),
                dtype=FEATURE_DTYPE,
                compressors=FEATURE_COMPRESSOR,
                fill_value=0,
            )
        arrays[name] = store.array(name, shape, FEATURE_DTYPE)  # reopens, checking shape and dtype
    backbone = backbone.to(device)
    start = store.done - store.done % cfg.batch_size  # batches always start at multiples of batch_size
    with tqdm(total=n, initial=start, unit="img", desc="clip_features", disable=not progress) as bar:
        for lo in range(start, n, cfg.batch_size):
            hi = min(lo + cfg.batch_size, n)
            images = preprocess(torch.from_numpy(dataset["rgb"][lo:hi])).to(device)
            with torch.no_grad(), autocast(device):
                feats = backbone.forward_features(torch.cat([images, images.flip(-1)]), layers)
            for name, value in feats.items():
                value = value.float().unflatten(0, (N_VIEWS, hi - lo)).transpose(0, 1)
                arrays[name][lo:hi] = value.cpu().numpy().astype(FEATURE_DTYPE)
            store.mark_done(hi)
            bar.update(hi - lo)
    return store.commit({**attrs, "n_images": n})


def check_clip_features(
    group, cfg: ClipConfig, *, weights_sha256: str | None = None, layers: tuple[str, ...] = ()
) -> None:
    """Raise StoreError unless ``group`` (an open clip.zarr) fits ``cfg`` and holds ``layers``.

    Checks the model, the weights tag (and SHA-256 when given), the crop and the normalisation.
    """
    attrs: Mapping[str, Any] = group.attrs
    expected = {
        "model": cfg.model,
        "weights": weights_tag(cfg),
        "crop": list(DEPTHCLIP_CROP),
        "normalisation": normalisation_attrs(),
    }
    if weights_sha256 is not None:
        expected["weights_sha256"] = weights_sha256
    wrong = [
        f"{key}: store has {attrs.get(key)!r}, params ask for {value!r}"
        for key, value in expected.items()
        if plain(attrs.get(key)) != plain(value)
    ]
    if wrong:
        raise StoreError(
            f"CLIP features store {group.store} was written with other settings ({'; '.join(wrong)}). "
            "Rerun `dvc repro clip_features` so the features match the params."
        )
    missing = [name for name in layers if name not in group]
    if missing:
        raise StoreError(
            f"CLIP features store lacks layer(s) {missing} (it caches {sorted(group.array_keys())}); add them to "
            "clip.cache_layers and rerun `dvc repro clip_features`"
        )
