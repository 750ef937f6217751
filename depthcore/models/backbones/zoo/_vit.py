"""Helpers shared by the ViT backbones: block layer names, token maps, position-embedding resizing, and the timm
ViT backbone with a class token that the DINOv2 variants (``dinov2.py``) configure.

Block layers are 1-indexed: ``block<k>`` is the token sequence after the k-th residual block (before any final
norm, or with the model's final LayerNorm applied where the backbone is built with ``final_norm``), its patch
tokens returned as a B x C x h x w map (row-major over the patch grid).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from depthcore.geometry.frame import IMAGENET_MEAN, IMAGENET_STD
from depthcore.models.backbones.zoo.base import (
    CLS_SUFFIX,
    CROP_SIZE,
    BackboneSettings,
    FrozenBackbone,
    LayerSpec,
    WeightsRelease,
    instantiate,
    unwrap_state_dict,
)

BLOCK_PREFIX = "block"


def block_layers(depth: int) -> tuple[str, ...]:
    """('block1', ..., f'block{depth}')."""
    return tuple(f"{BLOCK_PREFIX}{k}" for k in range(1, depth + 1))


def block_index(layer: str) -> int:
    """'block<k>' -> k - 1 (the 0-based index of the residual block)."""
    return int(layer.removeprefix(BLOCK_PREFIX)) - 1


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """B x (h * w) x C patch tokens (row-major) -> B x C x h x w."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid).contiguous()


def resize_grid_embedding(embedding: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """1 x C x h0 x w0 position embedding -> 1 x C x h x w: ``F.interpolate`` with ``mode``, align_corners False,
    no antialiasing (the identity at the same size)."""
    if tuple(embedding.shape[-2:]) == tuple(size):
        return embedding
    return F.interpolate(embedding.float(), size=size, mode=mode, align_corners=False).to(embedding.dtype)


def resized_to_patches(size: tuple[int, int], patch: int) -> tuple[int, int]:
    """The nearest multiples of ``patch`` at or above ``size`` (H, W) (416 x 544 -> 420 x 546 for patch 14)."""
    return math.ceil(size[0] / patch) * patch, math.ceil(size[1] / patch) * patch


# ------------------------------------------------------------------------------------------ timm ViTs (DINOv2)
INFORMATIVE_LAYER_SCALE = 0.25  # LayerScale gamma under the informative random init (timm's own init: 1e-5)
LAYER_SCALE_NAMES = (".gamma", ".gamma_1", ".gamma_2")  # timm's LayerScale parameters (ViT: ls1.gamma; Eva: gamma_1)


def hf_timm_release(model: str, *, citation: str) -> WeightsRelease:
    """timm's Hugging Face copy of ``model`` (``timm/<model>``, model.safetensors; its SHA-256 is announced by
    the server, X-Linked-Etag), Apache-2.0."""
    return WeightsRelease(
        tag="official",
        url=f"https://huggingface.co/timm/{model}/resolve/main/model.safetensors",
        filename=f"{model}.safetensors",
        sha256=None,
        format="safetensors",
        licence="Apache-2.0",
        citation=citation,
    )


class TimmViTBackbone(FrozenBackbone):
    """A frozen timm VisionTransformer (or Eva: DINOv3) with a class token: ``block1``..``block<depth>``
    patch-token maps (B x C x h x w) and ``{layer}_cls`` (B x C), register tokens dropped. ``final_norm`` False:
    the blocks' outputs as they are, as DINOv2's depth heads read them; True: with the model's final LayerNorm
    applied to every token (class token included), as DINOv3's depth heads read them.

    Geometry: the 416 x 544 crop is resized bilinearly (align_corners False, no antialiasing: it is enlarged) to
    the next multiples of the patch (420 x 546 for patch 14: a 30 x 39 grid; the 480 x 640 frame to 490 x 644, a
    35 x 46 grid; patch 16 needs no resize), then normalised with ImageNet
    statistics. The position embedding is resampled to the input's grid by timm (``dynamic_img_size``: bicubic,
    antialiased, from its 37 x 37 table); any input whose sides are multiples of the patch works.
    """

    class_token = True

    def __init__(self, model: nn.Module, *, name: str, final_norm: bool = False):  # model: kept as ``vit``
        super().__init__()
        self.name = name
        self.vit = model
        self.final_norm = bool(final_norm)
        self.patch = int(model.patch_embed.patch_size[0])
        self.input_size = resized_to_patches(CROP_SIZE, self.patch)
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        channels = int(model.embed_dim)
        grid = (self.input_size[0] // self.patch, self.input_size[1] // self.patch)
        self.layer_specs = {name: LayerSpec(channels, self.patch, grid) for name in block_layers(len(model.blocks))}
        self.freeze()

    @property
    def library_model(self) -> nn.Module:
        return self.vit

    def preprocess(self, crop: torch.Tensor) -> torch.Tensor:
        """B x 3 x 416 x 544 in [0, 1] -> B x 3 x 420 x 546 (patch 14): bilinear resize to the next multiples of the
        patch, then ImageNet statistics (the 480 x 640 frame: 490 x 644 for patch 14, as it is for patch 16)."""
        self.check_crop(crop)
        size = resized_to_patches(tuple(crop.shape[-2:]), self.patch)
        x = crop.float()
        if size != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
        return self.normalise(x)

    def forward_features(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """B x 3 x H x W (multiples of the patch) -> {block<k>: B x C x H/p x W/p, block<k>_cls: B x C}."""
        self.check_layers(layers)
        self.check_input(x, self.patch)
        return timm_block_maps(self.vit, x.to(self.vit.patch_embed.proj.weight.dtype), layers, norm=self.final_norm)


def build_timm_vit(
    *,
    model: str,
    name: str,
    cfg: BackboneSettings,
    state_dict: dict[str, torch.Tensor] | None,
    final_norm: bool = False,
) -> TimmViTBackbone:
    """The timm ``model`` (random init, dynamic image size) as a frozen backbone: ``state_dict`` None gives seeded
    informative random weights (:func:`informative_timm_init`), else it is loaded strictly; ``final_norm``: see
    :class:`TimmViTBackbone`."""
    import timm

    def create(device: str) -> nn.Module:
        with torch.device(device):
            return timm.create_model(model, pretrained=False, dynamic_img_size=True)

    vit = instantiate(create, backbone=name, init_seed=cfg.init_seed, state_dict=state_dict, init=informative_timm_init)
    return TimmViTBackbone(vit, name=name, final_norm=final_norm)


def informative_timm_init(vit: nn.Module) -> None:
    """timm's ViT init with LayerScale at 1e-5 makes every block the identity (block1 == block12). Here every
    Linear weight is drawn N(0, 1 / fan_in) (variance preserving), its bias zero, and every LayerScale gamma is
    INFORMATIVE_LAYER_SCALE: features change gradually through the blocks (cosine ~0.98 between neighbours, ~0.77
    between block1 and block12, std 0.9 -> 1.2), like open_clip's and SAM's own random ViTs. Call seeded."""
    for module in vit.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=module.in_features**-0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for param_name, param in vit.named_parameters():
        if param_name.endswith(LAYER_SCALE_NAMES):
            nn.init.constant_(param, INFORMATIVE_LAYER_SCALE)


def timm_state_dict(state) -> dict[str, torch.Tensor]:
    """The state dict of a loaded timm weights file (timm's Hugging Face model.safetensors: timm's own key
    names, nothing to convert)."""
    return unwrap_state_dict(state)


def timm_block_maps(vit: nn.Module, x: torch.Tensor, layers: tuple[str, ...], *, norm: bool) -> dict[str, torch.Tensor]:
    """timm's ``forward_intermediates`` of the blocks ``layers`` (block1..blockN) as maps: {block<k>: B x C x h x w,
    block<k>_cls: B x C (the first prefix token)}, in the order of ``layers``; ``norm``: after the final norm."""
    indices = sorted(block_index(name) for name in layers)
    maps = vit.forward_intermediates(
        x,
        indices=indices,
        return_prefix_tokens=True,
        norm=norm,
        stop_early=True,
        output_fmt="NCHW",
        intermediates_only=True,
    )
    out: dict[str, torch.Tensor] = {}
    for index, (patch_map, prefix) in zip(indices, maps, strict=True):
        name = f"{BLOCK_PREFIX}{index + 1}"
        out[name] = patch_map
        out[name + CLS_SUFFIX] = prefix[:, 0]
    return {key: out[key] for name in layers for key in (name, name + CLS_SUFFIX)}
