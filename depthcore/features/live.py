"""Live features (params ``features: live``): the frozen backbone run inside training and evaluation instead of
read from ``backbone.zarr``.

The loader then reads, instead of every ``clip_<layer>`` key, ``backbone_rgb`` (B x 3 x h x w float32 in [0, 1],
the sample's crop, never mirrored) and ``backbone_flip`` (B bool, the sample is mirrored)
(:func:`depthcore.data.batch.loader_keys`). :class:`LiveFeatures` turns them into the ``clip_<layer>`` keys on
the batch's device, with the features stage's own arithmetic (:func:`depthcore.features.backbone.view_features`:
network input, the image with its mirror image, float16 autocast on CUDA only, no gradients, eval mode), rounded
to float16 as the store holds them. So on the fixed DepthCLIP crop the live batch equals the cached one bit for
bit, and training sees the same inputs by either route; with live features the training crop is random (the
references' 416 x 544 RandomCrop of the frame) and the colour jitter reaches the backbone's input. Evaluation
with ``eval.frame: full`` loads the whole 480 x 640 frame as ``backbone_rgb``, which the backbone's
``preprocess`` takes by the crop's rule (:mod:`depthcore.models.backbones.zoo.base`).

In training (no mirrored view needed) only the view a sample uses is forwarded, the batch at once: half the
backbone work of a pair and the GPU's batched throughput. Batched kernels may round float32 ~1e-7 differently
from the features stage's one image (and its mirror) at a time, which can move a value by one float16 step; the
run stays deterministic for its batch size (on CPU), so a resumed run computes the same features.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from depthcore.data.batch import BACKBONE_FLIP, BACKBONE_RGB, CLIP_PREFIX, FLIPPED_SUFFIX, LIVE_KEYS
from depthcore.device import autocast
from depthcore.features.backbone import (
    CLS_SUFFIX,
    features_attrs,
    image_features,
    network_input,
    round_features,
    view_features,
)
from depthcore.weights.load import load_backbone
from depthcore.weights.manifest import read_manifest


class LiveFeatures:
    """The frozen ``backbone``'s features for the batch keys ``keys`` (the adapter's ``clip_<layer>`` and
    ``clip_<layer>_cls`` keys) computed from a loaded batch.

    ``features(batch, with_flipped=...)``: the batch without ``backbone_rgb`` / ``backbone_flip`` and with
    ``clip_<layer>`` (B x C x h x w float16, the features of the sample as seen: of the mirror image where
    ``backbone_flip``) and, with ``with_flipped``, ``clip_<layer>_flipped`` (the other view), as the cached loader
    gives them. The backbone follows the batch's device."""

    def __init__(self, backbone, keys: tuple[str, ...], *, attrs: Mapping[str, Any] | None = None):
        self.backbone = backbone.eval().requires_grad_(False)
        self.keys = tuple(dict.fromkeys(key for key in keys if key.startswith(CLIP_PREFIX)))
        self.layers = feature_layers(self.keys)
        self.attrs = dict(attrs or {})

    @classmethod
    def from_weights(cls, weights_dir: Path | str, keys: tuple[str, ...]) -> LiveFeatures:
        """The backbone of the ``fetch_backbone`` folder ``weights_dir``, with the attrs a features store of it would
        record (:func:`depthcore.features.backbone.features_attrs`: weights manifest, crop, normalisation, layer
        shapes), which the checkpoint keeps and evaluation compares."""
        backbone = load_backbone(weights_dir)
        weights = read_manifest(weights_dir, stage="fetch_backbone")
        return cls(backbone, keys, attrs=features_attrs(backbone, weights, feature_layers(keys)))

    def _to(self, device: torch.device) -> None:
        if next(self.backbone.parameters()).device != device:
            self.backbone.to(device)

    def __call__(self, batch: Mapping[str, torch.Tensor], *, with_flipped: bool = False) -> dict[str, torch.Tensor]:
        rgb, flip = batch[BACKBONE_RGB], batch[BACKBONE_FLIP].to(torch.bool)
        self._to(rgb.device)
        with autocast(rgb.device, enabled=False):  # float32 input, as the features stage makes it, under AMP too
            images = network_input(self.backbone, rgb.float())
        out = {key: value for key, value in batch.items() if key not in LIVE_KEYS}
        size = tuple(rgb.shape[-2:])  # the crop, or the frame (params eval.frame: full)
        if with_flipped:
            views = view_features(self.backbone, images, self.layers, size)  # B x 2 x ...: image, mirror image
            rows, view = torch.arange(len(flip), device=flip.device), flip.long()
            for key in self.keys:
                value = views[key.removeprefix(CLIP_PREFIX)]
                out[key], out[key + FLIPPED_SUFFIX] = value[rows, view], value[rows, 1 - view]
            return out
        seen = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)  # the view each sample uses
        with torch.no_grad(), autocast(images.device):  # batched: the GPU's throughput (see the module docstring)
            feats = image_features(self.backbone, seen, self.layers, size)
        return out | {key: round_features(feats[key.removeprefix(CLIP_PREFIX)]) for key in self.keys}


def feature_layers(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The backbone layers batch keys ``keys`` read (``clip_<layer>`` and ``clip_<layer>_cls`` -> ``<layer>``)."""
    layers = (key.removeprefix(CLIP_PREFIX).removesuffix(CLS_SUFFIX) for key in keys if key.startswith(CLIP_PREFIX))
    return tuple(dict.fromkeys(layers))
