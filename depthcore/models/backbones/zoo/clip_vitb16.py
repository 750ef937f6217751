"""OpenAI's CLIP ViT-B/16 (open_clip ``ViT-B-16-quickgelu``: OpenAI trained it with QuickGELU): blocks
block1..block12 (768 channels, with class token) and ``dense``, MaskCLIP's dense embeddings in the joint
image-text space (512 channels), the layer the DepthCLIP head reads.

Geometry: the 416 x 544 crop, not resized (multiples of 16: a 26 x 34 grid), normalised with CLIP's own statistics
(open_clip OPENAI_DATASET_MEAN / STD). The 14 x 14 positional embedding of the 224 x 224 training size is resized
bicubically (align_corners False, no antialiasing: MaskCLIP's ``resize_pos_embed``, interpolate_mode 'bicubic') to
the input's grid; the class token's entry is kept as is.

``dense`` (MaskCLIP, chongzhou96/MaskCLIP mmseg/models/backbones/vit.py, ``return_qkv`` / ``skip_last_attn``, and
decode_heads/maskclip_head.py): the last residual block without its attention mixing: from the block's input x,
``v = x + out_proj(v_proj(ln_1(x)))`` (the value projection, then the attention's output projection), then
``v = v + mlp(ln_2(v))``, then ``ln_post`` and the visual projection ``proj`` (768 -> 512, no bias) per patch
token; not L2-normalised (MaskCLIP's head normalises before comparing with text embeddings).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from depthcore.models.backbones.clip import create_clip_model, encode_prompts
from depthcore.models.backbones.zoo._clip import accepted_clip_files, convert_clip_state_dict
from depthcore.models.backbones.zoo._vit import (
    BLOCK_PREFIX,
    block_index,
    block_layers,
    resize_grid_embedding,
    tokens_to_map,
)
from depthcore.models.backbones.zoo.base import (
    CLS_SUFFIX,
    CROP_SIZE,
    BackboneFacts,
    BackboneSettings,
    BackboneSpec,
    FrozenBackbone,
    LayerSpec,
    WeightsRelease,
    instantiate,
)
from depthcore.models.backbones.zoo.registry import register

NAME = "clip_vitb16"
MODEL = "ViT-B-16-quickgelu"
PATCH = 16
DEPTH = 12
DENSE = "dense"
LAYERS = (*block_layers(DEPTH), DENSE)
FACTS = BackboneFacts(layers=LAYERS, class_token=True, text=True, zeroshot_layer=DENSE)
# OpenAI's URL for ViT-B/16 (open_clip.get_pretrained_url('ViT-B-16-quickgelu', 'openai')); OpenAI embeds the
# file's SHA-256 as the second-to-last folder of the URL.
OPENAI_URL = (
    "https://openaipublic.azureedge.net/clip/models/"
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt"
)
RELEASES: tuple[WeightsRelease, ...] = (
    WeightsRelease(
        tag="openai",
        url=OPENAI_URL,
        filename="ViT-B-16.pt",
        sha256=OPENAI_URL.rstrip("/").split("/")[-2],
        format="openai_jit",
        licence="MIT",
        citation="Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021",
    ),
)


class ClipViTB16Settings(BackboneSettings):
    """``backbones.clip_vitb16``: pretrained ('openai' | 'none' | a file), init_seed, layers (block1..12, dense)."""

    valid_layers: ClassVar[tuple[str, ...]] = LAYERS
    backbone: ClassVar[str] = NAME


class ClipViTBackbone(FrozenBackbone):
    """Frozen open_clip ViT CLIP: block token maps, MaskCLIP dense embeddings, and prompt embeddings."""

    name = NAME
    class_token, text, zeroshot_layer = FACTS.class_token, FACTS.text, FACTS.zeroshot_layer

    def __init__(self, clip_model: nn.Module, *, model_name: str = MODEL):
        super().__init__()
        import open_clip

        self.model_name = model_name
        self.clip = clip_model
        visual = clip_model.visual
        self.patch = int(visual.conv1.kernel_size[0])
        self.input_size = CROP_SIZE
        self.mean, self.std = tuple(open_clip.OPENAI_DATASET_MEAN), tuple(open_clip.OPENAI_DATASET_STD)
        self.embed_dim = int(visual.output_dim)
        grid = (CROP_SIZE[0] // self.patch, CROP_SIZE[1] // self.patch)
        width = int(visual.conv1.out_channels)
        self.layer_specs = {
            name: LayerSpec(width, self.patch, grid) for name in block_layers(len(visual.transformer.resblocks))
        }
        self.layer_specs[DENSE] = LayerSpec(self.embed_dim, self.patch, grid)
        self.freeze()

    @property
    def library_model(self) -> nn.Module:
        return self.clip

    def positional_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1 + h * w) x C: the class entry, then the patch entries resized (bicubic) from 14 x 14 to ``grid``."""
        table = self.clip.visual.positional_embedding
        side = int(round((table.shape[0] - 1) ** 0.5))
        patches = table[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patches = resize_grid_embedding(patches, grid, mode="bicubic").flatten(2)[0].transpose(0, 1)
        return torch.cat([table[:1], patches])

    def forward_features(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """B x 3 x H x W (multiples of 16) -> {block<k>: B x 768 x H/16 x W/16, block<k>_cls: B x 768,
        dense: B x 512 x H/16 x W/16}."""
        self.check_layers(layers)
        self.check_input(x, self.patch)
        visual = self.clip.visual
        blocks = visual.transformer.resblocks
        wanted = set(layers)
        last = len(blocks) - 1 if DENSE in wanted else max(block_index(name) for name in layers)
        tokens = visual.conv1(x.to(visual.conv1.weight.dtype))  # B x C x h x w
        grid = tuple(tokens.shape[-2:])
        tokens = tokens.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.positional_embedding(grid).to(tokens.dtype)
        tokens = visual.ln_pre(tokens)
        out: dict[str, torch.Tensor] = {}
        for index, block in enumerate(blocks[: last + 1]):
            if index == len(blocks) - 1 and DENSE in wanted:
                out[DENSE] = tokens_to_map(maskclip_dense(block, visual, tokens)[:, 1:], grid)
            tokens = block(tokens)
            name = f"{BLOCK_PREFIX}{index + 1}"
            if name in wanted:
                out[name] = tokens_to_map(tokens[:, 1:], grid)
                out[name + CLS_SUFFIX] = tokens[:, 0]
        return {key: out[key] for name in layers for key in ((name, name + CLS_SUFFIX) if name != DENSE else (name,))}

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """prompts: K strings -> K x 512 text embeddings, L2-normalised."""
        return encode_prompts(self.clip, self.model_name, prompts)


def maskclip_dense(block: nn.Module, visual: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's value path through the last residual block: ``tokens`` B x N x C (the block's input) ->
    B x N x D (D = visual.output_dim) dense embeddings, not normalised (see the module docstring)."""
    attn = block.attn
    width = tokens.shape[-1]
    value = F.linear(block.ln_1(tokens), attn.in_proj_weight[2 * width :], attn.in_proj_bias[2 * width :])
    value = tokens + block.ls_1(F.linear(value, attn.out_proj.weight, attn.out_proj.bias))
    value = value + block.ls_2(block.mlp(block.ln_2(value)))
    return visual.ln_post(value) @ visual.proj


@register(
    NAME,
    config=ClipViTB16Settings,
    spec=BackboneSpec(
        model=MODEL,
        facts=FACTS,
        releases=RELEASES,
        convert_state_dict=convert_clip_state_dict,
        accepted=accepted_clip_files("ViT-B-16.pt", "timm/vit_base_patch16_clip_224.openai"),
    ),
)
def build(*, cfg: ClipViTB16Settings, state_dict: dict[str, torch.Tensor] | None = None, clip=None) -> ClipViTBackbone:
    """The frozen CLIP ViT-B/16 (image and text towers); ``state_dict``: open_clip's key names for the whole model
    (:func:`~depthcore.models.backbones.zoo._clip.convert_clip_state_dict`); None: seeded random weights
    (``cfg.init_seed``), open_clip's own init, which is already informative (block outputs std ~1.0 -> 1.4, cosine
    ~0.97 between neighbouring blocks)."""

    def create(device: str) -> nn.Module:
        with torch.device(device):  # open_clip builds on the default device, then moves the model to ``device``
            return create_clip_model(MODEL, device)

    clip_model = instantiate(create, backbone=NAME, init_seed=cfg.init_seed, state_dict=state_dict)
    return ClipViTBackbone(clip_model)
