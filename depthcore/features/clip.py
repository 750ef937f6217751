"""Cached multi-scale CLIP features: ``dataset.zarr`` -> ``clip.zarr`` (the clip_features stage).

For every image: crop to the DepthCLIP input (rows 56:472, cols 60:604 -> 416 x 544), scale to
[0, 1], normalise with ImageNet mean / std (DepthCLIP's choice, not CLIP's), run the frozen backbone
on the image and on its horizontal mirror image, and store each layer in ``clip.cache_layers`` as
``<layer>`` (N, 2, C, h, w) float16 (index 1 of axis 1 = the mirrored image, its features not
flipped back). One chunk per image and view, so a training sample decompresses only the view it uses;
byte-shuffled zstd (Blosc), written in batches at
``clip.zarr.partial`` and renamed when complete; a rerun of the same work resumes at the first
unfinished image and gives the same store as an uninterrupted run.

The attrs record what the features depend on (weights manifest, crop, normalisation, layer shapes);
checkpoints keep a copy and refuse features that differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from zarr.codecs import BloscCodec

from depthcore.artifacts import save_shallow
from depthcore.data.store import ResumableStore, Store, StoreError
from depthcore.device import autocast, default_device, per_image
from depthcore.geometry.frame import (
    DEPTHCLIP_CROP,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NYU_HEIGHT,
    NYU_WIDTH,
    crop_shape,
    crop_tensor,
    normalise_imagenet,
)
from depthcore.models.backbones.clip import ClipBackbone
from depthcore.models.backbones.clip_shallow import shallow_state_dict
from depthcore.weights.clip import load_clip_backbone
from depthcore.weights.manifest import read_manifest

PIXEL_SCALE = 1.0 / 255.0
FEATURES_VERSION = 2
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
    return normalise_imagenet(crop_tensor(rgb.permute(0, 3, 1, 2)).float() * PIXEL_SCALE)


def features_attrs(backbone: ClipBackbone, weights: dict[str, Any], layers: tuple[str, ...]) -> dict[str, Any]:
    """The attrs of a features store: what the features depend on and how each layer is laid out.

    weights: the ``fetch_clip`` manifest (model, tag, SHA-256)."""
    height, width = crop_shape(DEPTHCLIP_CROP)
    specs = backbone.layer_specs
    return {
        "version": FEATURES_VERSION,
        "weights": weights,
        "crop": list(DEPTHCLIP_CROP),
        "input_size": [height, width],
        "normalisation": normalisation_attrs(),
        "views": ["image", "horizontally flipped image (features not flipped back)"],
        "layers": {
            name: {
                "channels": specs[name].channels,
                "stride": specs[name].stride,
                "shape": [specs[name].channels, height // specs[name].stride, width // specs[name].stride],
            }
            for name in layers
        },
    }


def clip_views(backbone: ClipBackbone, rgb: np.ndarray, layers: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The stored features of a batch of frames: ``rgb`` B x 480 x 640 x 3 uint8 -> layer -> B x 2 x C x h x w
    float16 (view 0: the image, view 1: its mirror image, features not flipped back), computed on the device
    the backbone is on (float16 autocast on CUDA), one image (and its mirror) at a time: the bytes do not
    depend on B. What ``clip.zarr`` holds, and what live prediction computes."""
    device = next(backbone.parameters()).device
    images = preprocess(torch.from_numpy(np.ascontiguousarray(rgb))).to(device)
    with torch.no_grad(), autocast(device):  # per image: image 0, mirror 0, image 1, mirror 1, ...
        feats = per_image(lambda x: backbone.forward_features(torch.cat([x, x.flip(-1)]), layers), images)
    return {
        name: value.float().unflatten(0, (len(rgb), N_VIEWS)).cpu().numpy().astype(FEATURE_DTYPE)
        for name, value in feats.items()
    }


def extract_clip_features(
    dataset: Path | str,
    out: Path | str,
    *,
    backbone: ClipBackbone,
    weights: dict[str, Any],
    layers: tuple[str, ...],
    key: str | None,
    batch_size: int = 4,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> Path:
    """Write ``out`` (clip.zarr) with ``layers`` of every image of ``dataset``; return ``out``.

    Runs on ``device`` (default: CUDA with float16 autocast when available, else CPU float32). A run
    interrupted and restarted with the same ``key`` resumes at the first unfinished image; the result
    does not depend on ``batch_size``.
    """
    data = Store(dataset, required=("rgb",))
    n = data.shape("rgb")[0]
    if data.shape("rgb")[1:] != (NYU_HEIGHT, NYU_WIDTH, 3):
        raise StoreError(f"{dataset}: rgb is {data.shape('rgb')}, expected (N, {NYU_HEIGHT}, {NYU_WIDTH}, 3)")
    device = default_device(device)
    attrs = features_attrs(backbone, weights, layers)
    store = ResumableStore(out, key=key)
    arrays = {
        name: store.array(
            name, (n, N_VIEWS, *spec["shape"]), FEATURE_DTYPE, compressors=FEATURE_COMPRESSOR, split_axis1=True
        )
        for name, spec in attrs["layers"].items()
    }
    backbone = backbone.to(device)
    with tqdm(total=n, initial=store.done, unit="img", desc="clip_features", disable=not progress) as bar:
        for lo in range(store.done, n, batch_size):
            hi = min(lo + batch_size, n)
            for name, value in clip_views(backbone, data.read("rgb", slice(lo, hi)), layers).items():
                arrays[name][lo:hi] = value
            store.mark_done(hi)
            bar.update(hi - lo)
    return store.commit({**attrs, "n_images": n})


def cache_clip_features(
    weights_dir: Path | str,
    dataset: Path | str,
    out: Path | str,
    shallow_out: Path | str,
    *,
    layers: tuple[str, ...],
    key: str | None,
    batch_size: int = 4,
    device: torch.device | str | None = None,
) -> Path:
    """The clip_features stage: the backbone of the ``fetch_clip`` folder over every image of ``dataset`` on
    ``device``, and the frozen stem + layer1 weights (``shallow_out``) adapters that compute those layers need."""
    backbone = load_clip_backbone(weights_dir)
    weights = read_manifest(weights_dir, stage="fetch_clip")
    save_shallow(shallow_out, shallow_state_dict(backbone.clip.visual))
    return extract_clip_features(
        dataset, out, backbone=backbone, weights=weights, layers=layers, key=key, batch_size=batch_size, device=device
    )
