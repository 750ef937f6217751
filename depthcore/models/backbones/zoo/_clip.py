"""What the zoo's CLIP backbones (``clip_rn50``, ``clip_vitb16``) share: reading a CLIP checkpoint.

OpenAI's TorchScript archives (read as tensors), open_clip state dicts (``open_clip_pytorch_model.bin`` /
``open_clip_model.safetensors`` of the model's Hugging Face repository, e.g. ``timm/vit_base_patch16_clip_224.openai``)
and the fetch stage's own safetensors all name CLIP's weights as OpenAI's ``model.py`` does (``visual.*``,
``transformer.*``, ``token_embedding.weight``, ...). timm's ``model.safetensors`` in the same repositories holds the
image tower alone under timm's names (``patch_embed.*``, ``blocks.*``; ``stem.*`` for the ResNets): refused, naming
the files that work.
"""

from __future__ import annotations

import torch

from depthcore.models.backbones.clip import OPENAI_METADATA_KEYS
from depthcore.models.backbones.zoo.base import BackboneError, unwrap_state_dict

VISUAL_PREFIX = "visual."  # every CLIP image-tower key, in OpenAI's and open_clip's names
TIMM_KEYS = ("patch_embed.proj.weight", "stem.conv1.weight", "cls_token")  # timm's image-tower names


def accepted_clip_files(openai_file: str, hf_repo: str) -> tuple[str, ...]:
    """The files a CLIP backbone reads: OpenAI's archive ``openai_file``, the open_clip files of ``hf_repo``, and
    the fetch stage's output."""
    return (
        f"OpenAI's TorchScript archive {openai_file} (what pretrained: openai downloads; read as tensors)",
        f"open_clip's open_clip_model.safetensors or open_clip_pytorch_model.bin from huggingface.co/{hf_repo} "
        "(not timm's model.safetensors there: that is the image tower alone, under timm's names)",
        "a state dict with OpenAI's / open_clip's key names (visual.*, transformer.*, ...), e.g. a file the "
        "fetch_backbone stage wrote",
    )


def convert_clip_state_dict(state) -> dict[str, torch.Tensor]:
    """The open_clip state dict of a CLIP checkpoint's tensors: 'state_dict' and 'module.' unwrapped, OpenAI's
    metadata entries (input_resolution, context_length, vocab_size) dropped. Idempotent. BackboneError for a file
    without CLIP's ``visual.*`` keys (timm-keyed files named as such)."""
    state = {k: v for k, v in unwrap_state_dict(state).items() if k not in OPENAI_METADATA_KEYS}
    if not any(key.startswith(VISUAL_PREFIX) for key in state):
        timm = any(key in state for key in TIMM_KEYS)
        raise BackboneError(
            "it has no visual.* entries: not a CLIP checkpoint in OpenAI's / open_clip's names"
            + (" (its keys are timm's: timm's model.safetensors, the image tower alone)" if timm else "")
        )
    return state
