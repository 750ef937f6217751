"""What the zoo's CLIP backbones (``clip_rn50``, ``clip_vitb16``) share: reading a plain CLIP checkpoint."""

from __future__ import annotations

import torch

from depthcore.models.backbones.clip import OPENAI_METADATA_KEYS
from depthcore.models.backbones.zoo.base import unwrap_state_dict


def convert_clip_state_dict(state) -> dict[str, torch.Tensor]:
    """The state dict of a loaded plain CLIP checkpoint (the fetch stage's conversion of OpenAI's TorchScript
    archive, or an open_clip state dict): 'state_dict' and 'module.' unwrapped, OpenAI's metadata entries
    dropped."""
    return {k: v for k, v in unwrap_state_dict(state).items() if k not in OPENAI_METADATA_KEYS}
