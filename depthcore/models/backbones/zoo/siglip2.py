"""SigLIP 2 ViT-B/16 (open_clip ``ViT-B-16-SigLIP2``, 224 x 224, WebLI): blocks block1..block12 (768 channels, no
class token) and ``dense`` (768 channels, the joint image-text space), the layer the DepthCLIP head reads; its Gemma
text tower embeds the prompts.

Geometry: the 416 x 544 crop, not resized (a 26 x 34 grid of 16-pixel patches), normalised with SigLIP's statistics
(mean = std = 0.5: open_clip's ``_slpcfg``). The 14 x 14 position table (no class token) is resampled to the grid as
timm's ``dynamic_img_size`` does for this model (``resample_abs_pos_embed``: bicubic, antialiased, align_corners
False). ``dense``: the attention pool's value path per token (:mod:`depthcore.models.backbones.zoo._map`).

Tokenizer: open_clip's ``HFTokenizer`` of ``timm/ViT-B-16-SigLIP2`` (Gemma's 256k vocabulary; texts canonicalised:
lower case, punctuation removed; 64 tokens, EOS appended, right-padded with ``<pad>``) reproduced without
``transformers`` from that repository's ``tokenizer.json`` (and ``tokenizer_config.json`` where present) read by the
``tokenizers`` package (:mod:`depthcore.models.backbones.zoo._hf_tokenizer`). The files are placed by hand in
:data:`TOKENIZER_DIR` (they are not part of the ``official`` weights release); the fetch stage records their
SHA-256 in the weights manifest (``side_files``), so replacing one re-runs the stages that read the text tower.
Without the file the backbone works for images (features, probes, adapters) and :meth:`encode_text` refuses in
one line saying which file to put where.

Logits: SigLIP scores an image-text pair by sigmoid(t * cos + b) (learned ``logit_scale`` t = exp(t'), ``logit_bias``
b). depthcore's DepthCLIP head uses neither: it takes a softmax over the K depth classes of 100 * cos / temperature
per location (DepthCLIP's rule, the same for every text backbone). The bias b is the same for every class, so it
cancels in a softmax over classes; the scale is DepthCLIP's fixed 100 / temperature instead of the learned t.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from depthcore.models.backbones.zoo._hf_tokenizer import CONFIG_FILE, TOKENIZER_FILE, HFFileTokenizer
from depthcore.models.backbones.zoo._map import (
    LAYERS,
    MapClipBackbone,
    MapVariant,
    build_map_backbone,
    hf_open_clip_release,
    open_clip_keys,
)
from depthcore.models.backbones.zoo.base import (
    BackboneError,
    BackboneFacts,
    BackboneSettings,
    BackboneSpec,
    WeightsRelease,
)
from depthcore.models.backbones.zoo.registry import register

NAME = "siglip2_vitb16"
MODEL = "ViT-B-16-SigLIP2"
HF_REPO = "timm/ViT-B-16-SigLIP2"  # open_clip's pretrained entry ('webli', hf_hub) of the model
TIMM_IMAGE_REPO = "timm/vit_base_patch16_siglip_224.v2_webli"  # timm's image tower alone
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)  # open_clip INCEPTION_MEAN / INCEPTION_STD (_slpcfg)
CONTEXT_LENGTH = 64  # the text tower's positions (open_clip model config text_cfg.context_length)
TOKENIZER_CLEAN = "canonicalize"  # open_clip model config text_cfg.tokenizer_kwargs.clean
TOKENIZER_DIR = Path("weights/backbone/siglip2_vitb16_tokenizer")  # where the Gemma tokenizer files go (by hand)
SIDE_FILES = tuple(str(TOKENIZER_DIR / name) for name in (TOKENIZER_FILE, CONFIG_FILE))  # their SHA-256: the manifest
FACTS = BackboneFacts(layers=LAYERS, class_token=False, text=True, zeroshot_layer=LAYERS[-1])
CITATION = (
    "Tschannen et al., SigLIP 2: Multilingual Vision-Language Encoders with Improved Semantic Understanding, "
    "Localization, and Dense Features, 2025 (arXiv:2502.14786)"
)
RELEASES: tuple[WeightsRelease, ...] = (hf_open_clip_release(HF_REPO, MODEL, citation=CITATION),)


def resample_timm(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """1 x C x 14 x 14 -> 1 x C x h x w as timm's resample_abs_pos_embed (bicubic, antialias, align_corners False)."""
    return F.interpolate(table.float(), size=grid, mode="bicubic", align_corners=False, antialias=True)


VARIANT = MapVariant(name=NAME, model=MODEL, mean=SIGLIP_MEAN, std=SIGLIP_STD, resample=resample_timm)


class Siglip2ViTB16Settings(BackboneSettings):
    """``backbones.siglip2_vitb16``: pretrained ('official' | 'none' | a file), init_seed, layers (block1..12,
    dense)."""

    valid_layers: ClassVar[tuple[str, ...]] = LAYERS
    backbone: ClassVar[str] = NAME


class GemmaTokenizer:
    """open_clip's SigLIP 2 tokenizer (``HFTokenizer`` reproduced over ``folder/tokenizer.json`` with the
    ``tokenizers`` package), loaded on first use: prompts -> K x 64 token ids; BackboneError in one line when the
    file is missing or changed since its first use."""

    def __init__(self, folder: Path | str = TOKENIZER_DIR):
        self.folder = Path(folder)
        self._tokenizer: HFFileTokenizer | None = None

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        if self._tokenizer is None:
            self._tokenizer = self.load()
        return self._tokenizer(prompts)

    def load(self) -> HFFileTokenizer:
        if not (self.folder / TOKENIZER_FILE).is_file():
            raise BackboneError(
                f"{NAME}'s text tower needs its Gemma tokenizer: download {TOKENIZER_FILE} (and {CONFIG_FILE}) of "
                f"huggingface.co/{HF_REPO} into {self.folder}/, or run without zero-shot depth"
            )
        return HFFileTokenizer(self.folder, context_length=CONTEXT_LENGTH, clean=TOKENIZER_CLEAN)


def convert_state_dict(state) -> dict[str, torch.Tensor]:
    """open_clip's state dict of a SigLIP 2 checkpoint (``open_clip_model.safetensors`` /
    ``open_clip_pytorch_model.bin``: open_clip's names already; unwrapped). Idempotent. BackboneError for timm's
    image-tower-only file."""
    return open_clip_keys(state, backbone=NAME, timm_files=f"huggingface.co/{TIMM_IMAGE_REPO} model.safetensors")


ACCEPTED = (
    f"open_clip's open_clip_model.safetensors or open_clip_pytorch_model.bin from huggingface.co/{HF_REPO} "
    "(what pretrained: official downloads)",
    f"a state dict in open_clip's names of {MODEL} (visual.trunk.*, text.*, logit_scale, logit_bias), e.g. a file "
    "the fetch_backbone stage wrote",
    f"(not timm's model.safetensors of huggingface.co/{TIMM_IMAGE_REPO}: the image tower alone, no text tower)",
)


@register(
    NAME,
    config=Siglip2ViTB16Settings,
    spec=BackboneSpec(model=MODEL, facts=FACTS, releases=RELEASES, convert_state_dict=convert_state_dict,
                      accepted=ACCEPTED, side_files=SIDE_FILES),
)  # fmt: skip
def build(
    *, cfg: Siglip2ViTB16Settings, state_dict: dict[str, torch.Tensor] | None = None, clip=None
) -> MapClipBackbone:
    """The frozen SigLIP 2 ViT-B/16 (image and text towers); ``state_dict``: open_clip's names; None: seeded
    informative random weights (``cfg.init_seed``)."""
    return build_map_backbone(
        VARIANT, init_seed=cfg.init_seed, state_dict=state_dict, tokenize=GemmaTokenizer(), source=str(cfg.pretrained)
    )
