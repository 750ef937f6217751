"""Cached multi-scale features of the selected backbone: ``dataset.zarr`` -> ``backbone.zarr`` (the ``features``
stage, for whichever backbone ``backbone`` selects).

For every image: crop to the DepthCLIP input (rows 56:472, cols 60:604 -> 416 x 544), scale to
[0, 1], turn it into the backbone's input (:meth:`preprocess`: for CLIP RN50 normalised with ImageNet mean /
std, DepthCLIP's choice, not CLIP's; resized and normalised as each zoo backbone states), run the frozen
backbone on the image and on its horizontal mirror image, and store each cached layer as
``<layer>`` (N, 2, C, h, w) float16 (index 1 of axis 1 = the mirrored image, its features not
flipped back) and, for backbones with a class token, ``<layer>_cls`` (N, 2, C). One chunk per image and
view, so a training sample decompresses only the view it uses; byte-shuffled zstd (Blosc), written in batches
at ``backbone.zarr.partial`` and renamed when complete; a rerun of the same work resumes at the first
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

from depthcore.artifacts import HEAD_LAYER, save_no_shallow, save_shallow
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
from depthcore.weights.load import load_backbone
from depthcore.weights.manifest import read_manifest

PIXEL_SCALE = 1.0 / 255.0
FEATURES_VERSION = 2
FEATURE_DTYPE = np.float16
# zstd on byte-shuffled float16 (Blosc): ~15 % smaller than plain zstd on ReLU feature maps.
FEATURE_COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=2)
N_VIEWS = 2  # the image and its horizontal mirror image
CROP_SIZE = crop_shape(DEPTHCLIP_CROP)  # (416, 544): the images the features stage feeds the backbone
BLOCK_PREFIX = "block"  # transformer blocks' layer names (block1 .. blockN), which carry a class token
CLS_SUFFIX = "_cls"  # the stored class token of a block: <layer>_cls (N, 2, C)


def normalisation_attrs(backbone=None) -> dict[str, Any]:
    """How input pixels were turned into network input (recorded in the store's attrs): ImageNet statistics for
    CLIP RN50 (DepthCLIP's), the backbone's own ``mean`` / ``std`` otherwise."""
    mean, std = getattr(backbone, "mean", IMAGENET_MEAN), getattr(backbone, "std", IMAGENET_STD)
    return {"scale": PIXEL_SCALE, "mean": list(mean), "std": list(std), "space": "RGB"}


def preprocess(rgb: torch.Tensor | np.ndarray) -> torch.Tensor:
    """B x 480 x 640 x 3 uint8 RGB -> B x 3 x 416 x 544 float32 network input.

    Order: crop (DEPTHCLIP_CROP), scale to [0, 1], subtract the ImageNet mean, divide by its std.
    """
    return normalise_imagenet(crop_rgb(rgb))


def crop_rgb(rgb: torch.Tensor | np.ndarray) -> torch.Tensor:
    """B x 480 x 640 x 3 uint8 RGB -> B x 3 x 416 x 544 float32 in [0, 1]: the DepthCLIP crop, scaled."""
    rgb = torch.as_tensor(rgb)
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or tuple(rgb.shape[1:3]) != (NYU_HEIGHT, NYU_WIDTH):
        raise ValueError(f"expected B x {NYU_HEIGHT} x {NYU_WIDTH} x 3 RGB images, got {tuple(rgb.shape)}")
    return crop_tensor(rgb.permute(0, 3, 1, 2)).float() * PIXEL_SCALE


def layer_grid(spec, crop_size: tuple[int, int]) -> tuple[int, int]:
    """The h x w of a cached layer on the crop: the spec's own ``grid`` where it states one (ViTs), else the crop
    divided by its stride (ResNet stages)."""
    grid = getattr(spec, "grid", None)
    return tuple(grid) if grid else (crop_size[0] // spec.stride, crop_size[1] // spec.stride)


def features_attrs(backbone, weights: dict[str, Any], layers: tuple[str, ...]) -> dict[str, Any]:
    """The attrs of a features store: what the features depend on and how each layer is laid out.

    weights: the ``fetch_backbone`` manifest (backbone, model, tag, SHA-256). ``input_size`` is the crop the
    adapters predict on; ``network_input`` what the backbone was fed."""
    height, width = crop_shape(DEPTHCLIP_CROP)
    specs = backbone.layer_specs
    grids = {name: layer_grid(specs[name], (height, width)) for name in layers}
    return {
        "version": FEATURES_VERSION,
        "backbone": weights.get("backbone", "clip_rn50"),
        "weights": weights,
        "crop": list(DEPTHCLIP_CROP),
        "input_size": [height, width],
        "network_input": list(getattr(backbone, "input_size", (height, width))),
        "normalisation": normalisation_attrs(backbone),
        "views": ["image", "horizontally flipped image (features not flipped back)"],
        "layers": {
            name: {
                "channels": specs[name].channels,
                "stride": specs[name].stride,
                "shape": [specs[name].channels, *grids[name]],
            }
            for name in layers
        },
        "class_tokens": class_token_layers(backbone, layers),
    }


def class_token_layers(backbone, layers: tuple[str, ...]) -> list[str]:
    """The cached layers stored with their class token (``<layer>_cls``): the transformer blocks of a backbone
    that has one."""
    return [name for name in layers if getattr(backbone, "class_token", False) and name.startswith(BLOCK_PREFIX)]


def network_input(backbone, crop: torch.Tensor) -> torch.Tensor:
    """B x 3 x 416 x 544 float32 in [0, 1] (:func:`crop_rgb`; or the B x 3 x 480 x 640 frame) -> the backbone's
    input: ImageNet statistics for a ClipBackbone (CLIP RN50, DepthCLIP's choice), the zoo backbone's own
    ``preprocess`` otherwise."""
    return normalise_imagenet(crop) if isinstance(backbone, ClipBackbone) else backbone.preprocess(crop)


def image_features(backbone, x: torch.Tensor, layers: tuple[str, ...], image_size: tuple[int, int]):
    """``backbone.forward_features(x, layers)`` for network input ``x`` made from images of ``image_size`` (H, W:
    the crop or the frame), cut to the cells that cover the images (a zoo backbone's ``image_maps``: SAM's padding
    rows of the frame)."""
    feats = backbone.forward_features(x, layers)
    cover = getattr(backbone, "image_maps", None)
    return feats if cover is None else cover(feats, tuple(image_size))


def view_features(
    backbone, images: torch.Tensor, layers: tuple[str, ...], image_size: tuple[int, int] = CROP_SIZE
) -> dict[str, torch.Tensor]:
    """Network input B x 3 x H x W (:func:`network_input` of images of ``image_size``: the crop, or the frame)
    -> layer -> B x 2 x C x h x w float16 on the images' device (view 1: the mirror image, features not flipped
    back; ``<layer>_cls`` B x 2 x C): each image and its mirror forwarded together, one image at a time, under
    float16 autocast on CUDA, without gradients. The one computation behind both the features store and live
    features (:mod:`depthcore.features.live`)."""

    def both(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return image_features(backbone, torch.cat([x, x.flip(-1)]), layers, image_size)

    with torch.no_grad(), autocast(images.device):  # per image: image 0, mirror 0, image 1, mirror 1, ...
        feats = per_image(both, images)
    return {name: round_features(value.unflatten(0, (len(images), N_VIEWS))) for name, value in feats.items()}


def round_features(value: torch.Tensor) -> torch.Tensor:
    """Features as stored and as live training reads them: float32 rounded to float16 (nearest, ties to even)."""
    return value.float().to(torch.float16)


def clip_views(backbone, rgb: np.ndarray, layers: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The stored features of a batch of frames: ``rgb`` B x 480 x 640 x 3 uint8 -> layer -> B x 2 x C x h x w
    float16 (view 0: the image, view 1: its mirror image, features not flipped back; ``<layer>_cls`` B x 2 x C
    for a backbone with a class token), computed on the device the backbone is on (float16 autocast on CUDA),
    one image (and its mirror) at a time: the bytes do not depend on B. What ``backbone.zarr`` holds, and what live
    prediction computes. ``backbone``: a ClipBackbone (CLIP RN50, ImageNet statistics on the crop) or any zoo
    backbone (its own ``preprocess`` of the [0, 1] crop)."""
    device = next(backbone.parameters()).device
    images = network_input(backbone, crop_rgb(torch.from_numpy(np.ascontiguousarray(rgb)))).to(device)
    return {name: value.cpu().numpy() for name, value in view_features(backbone, images, layers).items()}


def extract_features(
    dataset: Path | str,
    out: Path | str,
    *,
    backbone,
    weights: dict[str, Any],
    layers: tuple[str, ...],
    key: str | None,
    batch_size: int = 4,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> Path:
    """Write ``out`` (backbone.zarr) with ``layers`` of every image of ``dataset``; return ``out``.

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
    shapes = {name: spec["shape"] for name, spec in attrs["layers"].items()}
    shapes |= {name + CLS_SUFFIX: shapes[name][:1] for name in attrs["class_tokens"]}
    arrays = {
        name: store.array(name, (n, N_VIEWS, *shape), FEATURE_DTYPE, compressors=FEATURE_COMPRESSOR, split_axis1=True)
        for name, shape in shapes.items()
    }
    backbone = backbone.to(device)
    if not layers:  # nothing to cache (live features of a backbone without a zero-shot head): no backbone work
        store.mark_done(n)
    with tqdm(total=n, initial=store.done, unit="img", desc="features", disable=not progress) as bar:
        for lo in range(store.done, n, batch_size):
            hi = min(lo + batch_size, n)
            views = clip_views(backbone, data.read("rgb", slice(lo, hi)), layers)
            for name, array in arrays.items():
                array[lo:hi] = views[name]
            store.mark_done(hi)
            bar.update(hi - lo)
    return store.commit({**attrs, "n_images": n})


def cached_layers(backbone, layers: tuple[str, ...], *, live: bool = False) -> tuple[str, ...]:
    """The layers a features store holds: the chosen ``layers`` and the layer the backbone's zero-shot head reads
    (a ViT CLIP's ``dense`` text-space embeddings), so that the zero-shot stage never needs the backbone. With
    ``live`` features (training computes the chosen layers itself) only the zero-shot head's layer: CLIP RN50's
    ``layer4``, a ViT CLIP's ``dense``, none for a backbone without a text tower."""
    extra = getattr(backbone, "zeroshot_layer", None)
    if live:
        return (HEAD_LAYER,) if isinstance(backbone, ClipBackbone) else ((extra,) if extra else ())
    return tuple(layers) + ((extra,) if extra and extra not in layers and extra != "layer4" else ())


def cache_features(
    weights_dir: Path | str,
    dataset: Path | str,
    out: Path | str,
    shallow_out: Path | str,
    *,
    layers: tuple[str, ...],
    key: str | None,
    batch_size: int = 4,
    device: torch.device | str | None = None,
    live: bool = False,
) -> Path:
    """The features stage: the backbone of the ``fetch_backbone`` folder over every image of ``dataset`` on
    ``device``, and the frozen CLIP stem + layer1 weights (``shallow_out``) that adapters computing those layers
    need (an artifact naming the backbone and holding no weights for a backbone without a ResNet stem). With
    ``live`` (params ``features: live``) only the zero-shot head's layer is cached (:func:`cached_layers`)."""
    backbone = load_backbone(weights_dir)
    weights = read_manifest(weights_dir, stage="fetch_backbone")
    if isinstance(backbone, ClipBackbone):
        save_shallow(shallow_out, shallow_state_dict(backbone.clip.visual))
    else:
        save_no_shallow(shallow_out, backbone=weights.get("backbone", ""))
    return extract_features(
        dataset,
        out,
        backbone=backbone,
        weights=weights,
        layers=cached_layers(backbone, layers, live=live),
        key=key,
        batch_size=batch_size,
        device=device,
    )
