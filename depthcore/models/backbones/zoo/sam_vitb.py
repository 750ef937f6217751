"""SAM's ViT-B image encoder (segment_anything ``ImageEncoderViT`` of ``vit_b``): blocks block1..block12 (768
channels, no class token) and ``neck`` (256 channels: the encoder's output, the image embedding).

Geometry, SAM's own: the 416 x 544 crop is resized so that its longest side is 1024 (ResizeLongestSide:
``int(416 * 1024 / 544 + 0.5)`` = 783 rows x 1024 columns; bilinear, align_corners False, antialiased, as
``apply_image_torch``, on floats: SAM's ``apply_image`` resizes the uint8 image with PIL), normalised with SAM's
pixel statistics (mean 123.675, 116.28, 103.53 / std 58.395, 57.12, 57.375 on the 0-255 scale) and zero-padded at
the bottom and right to 1024 x 1024 (``Sam.preprocess``). The encoder's 64 x 64 grid (patch 16) covers the padded
square; only the rows that cover the image are returned: ceil(783 / 16) = 49 rows x 64 columns (the 49th row is
15 / 16 image). The 480 x 640 frame (full-frame evaluation) is resized to 768 x 1024 and padded the same way;
:meth:`SamViTBBackbone.image_maps` keeps its ceil(768 / 16) = 48 rows.

Other input sizes work (CPU tests): the absolute position embedding (64 x 64) is resized bicubically
(align_corners False, as ViTDet's ``get_abs_pos``) to the input's grid (the identity at 1024), the relative
position tables are interpolated by segment_anything itself, and an input W x W is taken as the crop resized to
width W and padded at the bottom: the rows kept are ceil(int(416 * W / 544 + 0.5) / 16), at most H / 16.
"""

from __future__ import annotations

import math
import re
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from depthcore.models.backbones.zoo._vit import block_index, block_layers, resize_grid_embedding
from depthcore.models.backbones.zoo.base import (
    CROP_SIZE,
    BackboneFacts,
    BackboneSettings,
    BackboneSpec,
    FrozenBackbone,
    LayerSpec,
    WeightsRelease,
    instantiate,
    unwrap_state_dict,
)
from depthcore.models.backbones.zoo.registry import register

NAME = "sam_vitb"
SAM_MODEL = "vit_b"
IMAGE_SIZE = 1024  # SAM's square input side (ResizeLongestSide target and pad size)
PATCH = 16
DEPTH = 12
PIXEL_SCALE = 255.0  # SAM's statistics are on the 0-255 scale
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
NECK = "neck"
LAYERS = (*block_layers(DEPTH), NECK)
FACTS = BackboneFacts(layers=LAYERS, class_token=False, text=False, zeroshot_layer=None)
ENCODER_PREFIX = "image_encoder."
TIMM_MLP = re.compile(r"\.mlp\.fc([12])\.")  # timm's names of segment_anything's MLPBlock lin1 / lin2

RELEASES: tuple[WeightsRelease, ...] = (
    WeightsRelease(
        tag="official",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        filename="sam_vit_b_01ec64.pth",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        format="torch",
        licence="Apache-2.0",
        citation="Kirillov et al., Segment Anything, ICCV 2023 (arXiv:2304.02643)",
    ),
)


class SamViTBSettings(BackboneSettings):
    """``backbones.sam_vitb``: pretrained ('official' | 'none' | a file), init_seed, layers (block1..12, neck)."""

    valid_layers: ClassVar[tuple[str, ...]] = LAYERS
    backbone: ClassVar[str] = NAME


def resized_height(width: int, image: tuple[int, int] = CROP_SIZE) -> int:
    """Rows of an ``image`` (H, W; the crop by default) resized to longest side ``width`` (SAM's ResizeLongestSide
    rounding): 783 for the crop at 1024, 768 for the 480 x 640 frame."""
    height, image_width = image
    return int(height * (width * 1.0 / max(height, image_width)) + 0.5)


def image_rows(height: int, width: int) -> int:
    """Token rows of an H x W input that cover the image: ceil(resized_height(W) / 16), at most H / 16."""
    return min(height // PATCH, math.ceil(resized_height(width) / PATCH))


class SamViTBBackbone(FrozenBackbone):
    """Frozen SAM ViT-B image encoder; see the module docstring for the geometry."""

    name = NAME
    class_token, text, zeroshot_layer = FACTS.class_token, FACTS.text, FACTS.zeroshot_layer

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.input_size = (IMAGE_SIZE, IMAGE_SIZE)
        self.mean = tuple(m / PIXEL_SCALE for m in PIXEL_MEAN)
        self.std = tuple(s / PIXEL_SCALE for s in PIXEL_STD)
        grid = (image_rows(IMAGE_SIZE, IMAGE_SIZE), IMAGE_SIZE // PATCH)
        width = int(encoder.patch_embed.proj.out_channels)
        neck = int(encoder.neck[-1].weight.shape[0])
        self.layer_specs = {name: LayerSpec(width, PATCH, grid) for name in block_layers(len(encoder.blocks))}
        self.layer_specs[NECK] = LayerSpec(neck, PATCH, grid)
        self.freeze()

    @property
    def library_model(self) -> nn.Module:
        return self.encoder

    def preprocess(self, crop: torch.Tensor) -> torch.Tensor:
        """B x 3 x 416 x 544 in [0, 1] -> B x 3 x 1024 x 1024: resized to 783 x 1024, SAM's statistics, zero-padded
        at the bottom (SAM pads after normalising). The 480 x 640 frame: resized to 768 x 1024, padded the same."""
        self.check_crop(crop)
        size = (resized_height(IMAGE_SIZE, tuple(crop.shape[-2:])), IMAGE_SIZE)
        x = F.interpolate(crop.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        x = self.normalise(x)
        return F.pad(x, (0, IMAGE_SIZE - size[1], 0, IMAGE_SIZE - size[0]))

    def image_maps(self, feats: dict[str, torch.Tensor], image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The rows that cover an image of ``image_size`` preprocessed: forward_features keeps the crop's 49 rows of
        the 1024 x 1024 input; the frame (768 rows at 1024) is covered by 48."""
        rows = math.ceil(resized_height(IMAGE_SIZE, tuple(image_size)) / PATCH)
        return {name: value[:, :, :rows] if value.ndim == 4 else value for name, value in feats.items()}

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """The absolute position embedding at ``grid`` (h, w): 1 x h x w x C (SAM's own table at 64 x 64)."""
        table = self.encoder.pos_embed.permute(0, 3, 1, 2)
        return resize_grid_embedding(table, grid, mode="bicubic").permute(0, 2, 3, 1)

    def forward_features(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """B x 3 x H x W (multiples of 16; 1024 x 1024 from preprocess) -> {block<k>: B x 768 x r x W/16,
        neck: B x 256 x r x W/16}, r = the rows covering the image (49 at 1024)."""
        self.check_layers(layers)
        self.check_input(x, PATCH)
        encoder = self.encoder
        rows = image_rows(x.shape[-2], x.shape[-1])
        wanted = set(layers)
        last = len(encoder.blocks) - 1 if NECK in wanted else max(block_index(name) for name in layers)
        out: dict[str, torch.Tensor] = {}
        tokens = encoder.patch_embed(x.to(encoder.patch_embed.proj.weight.dtype))  # B x h x w x C
        if encoder.pos_embed is not None:
            tokens = tokens + self.position_embedding(tuple(tokens.shape[1:3]))
        for index, block in enumerate(encoder.blocks[: last + 1]):
            tokens = block(tokens)
            name = f"block{index + 1}"
            if name in wanted:
                out[name] = tokens.permute(0, 3, 1, 2)[:, :, :rows].contiguous()
        if NECK in wanted:
            out[NECK] = encoder.neck(tokens.permute(0, 3, 1, 2))[:, :, :rows].contiguous()
        return {name: out[name] for name in layers}


def convert_state_dict(state) -> dict[str, torch.Tensor]:
    """The image encoder's state dict (segment_anything's ``ImageEncoderViT`` names) from SAM weights: Meta's
    ``sam_vit_b_01ec64.pth`` (the whole Sam model: its ``image_encoder.*`` entries, prefix removed, the prompt
    encoder and mask decoder dropped), timm's ``samvit_base_patch16.sa1b`` (the encoder, with the MLP's ``lin1`` /
    ``lin2`` named ``fc1`` / ``fc2``), or the encoder's state dict itself (what the fetch stage writes). Idempotent."""
    state = unwrap_state_dict(state)
    if any(key.startswith(ENCODER_PREFIX) for key in state):
        state = {k.removeprefix(ENCODER_PREFIX): v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    return {TIMM_MLP.sub(r".mlp.lin\1.", key): value for key, value in state.items()}


ACCEPTED = (
    "Meta's sam_vit_b_01ec64.pth (what pretrained: official downloads; the whole SAM model, its image encoder read)",
    "timm's model.safetensors from huggingface.co/timm/samvit_base_patch16.sa1b (the encoder in timm's names)",
    "segment_anything's ImageEncoderViT state dict of vit_b (e.g. a file the fetch_backbone stage wrote)",
)


@register(
    NAME,
    config=SamViTBSettings,
    spec=BackboneSpec(
        model=SAM_MODEL, facts=FACTS, releases=RELEASES, convert_state_dict=convert_state_dict, accepted=ACCEPTED
    ),
)
def build(*, cfg: SamViTBSettings, state_dict: dict[str, torch.Tensor] | None = None, clip=None) -> SamViTBBackbone:
    """The frozen SAM ViT-B image encoder; ``state_dict`` (image-encoder keys, :func:`convert_state_dict`) None:
    seeded random weights (``cfg.init_seed``), segment_anything's own init, which is already informative (block
    outputs std ~0.9 -> 1.2, cosine ~0.98 between neighbouring blocks; the neck is layer-normalised)."""
    from segment_anything import sam_model_registry

    def create(device: str) -> nn.Module:
        with torch.device(device):
            return sam_model_registry[SAM_MODEL]().image_encoder

    return SamViTBBackbone(instantiate(create, backbone=NAME, init_seed=cfg.init_seed, state_dict=state_dict))
