"""Stand-ins for the weights files users download, each in its real layout (random weights, the real architecture).

Each is built from the official model code's own state-dict layout:

- OpenAI's CLIP archives (``RN50.pt``, ``ViT-B-16.pt``): a traced TorchScript module of OpenAI's CLIP (open_clip's
  quickgelu models keep OpenAI's module names), float16, with OpenAI's metadata tensors ``input_resolution``,
  ``context_length`` and ``vocab_size`` at the top level and the text attention mask a plain attribute (a constant
  of the trace, not a tensor of the archive), as in OpenAI's ``clip/model.py``;
- open_clip's Hugging Face files (``open_clip_pytorch_model.bin``): ``torch.save`` of the open_clip state dict;
  timm's ``model.safetensors`` of the same repository: timm's image tower alone (``patch_embed.*``, ``blocks.*``);
- Meta's SAM release (``sam_vit_b_01ec64.pth``): ``torch.save`` of segment_anything's whole ``Sam`` state dict
  (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``; its pixel statistics are not persistent);
  timm's ``samvit_base_patch16.sa1b``: the encoder under timm's names (the MLP's ``lin1`` / ``lin2`` are
  ``fc1`` / ``fc2``: timm's own ``checkpoint_filter_fn``);
- Meta's DINOv2 release (``dinov2_vits14_pretrain.pth``): DinoVisionTransformer's state dict, which is timm's key
  names plus ``mask_token`` (1 x C, ``nn.Parameter(torch.zeros(1, embed_dim))``).
- Meta's DINOv3 release (``dinov3_vits16_pretrain_lvd1689m-08c60483.pth``): dinov3's DinoVisionTransformer state
  dict (dinov3/models/vision_transformer.py, hub/backbones.py: ``qkv_bias`` with ``mask_k_bias``, 4 storage
  tokens): ``storage_tokens``, ``blocks.*.ls{1,2}.gamma``, ``blocks.*.attn.qkv.bias`` + ``bias_mask`` (the k third
  masked), ``mask_token`` (1 x C) and the RoPE ``rope_embed.periods`` buffer (bfloat16, as the model cards say);
- NVIDIA's C-RADIOv3-B ``model.safetensors`` (Hugging Face ``nvidia/C-RADIOv3-B``): the whole RADIOModel under
  ``radio_model.``: the backbone ``model.*`` (``patch_generator.embedder.weight`` C x 3*16*16 channels first and
  bias-free, ``patch_generator.pos_embed`` 1 x 128*128 x C, ``patch_generator.cls_token.token`` (summary tokens then
  registers) x C, ``blocks.*`` in timm's names), ``input_conditioner.norm_mean`` / ``norm_std`` (3 x 1 x 1),
  ``summary_idxs`` and the teacher adaptors (one stand-in entry: their inner names are not pinned here), as timm's
  ``_convert_radio`` (timm/models/vision_transformer.py) reads it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from torch import nn

OPENAI_METADATA = {"input_resolution": 224, "context_length": 77, "vocab_size": 49408}


def openai_archive(clip_model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """Save open_clip CLIP ``clip_model`` (a quickgelu model: OpenAI's names) as OpenAI's TorchScript archive at
    ``path``; returns the state dict the archive holds (float16, with the metadata tensors). The model is changed."""
    clip_model.eval().half()
    mask = clip_model._buffers.pop("attn_mask", None)
    if mask is not None:  # OpenAI's model keeps the causal mask as a plain attribute, not a buffer
        clip_model.attn_mask = mask
    for key, value in OPENAI_METADATA.items():
        clip_model.__dict__.pop(key, None)
        clip_model.register_buffer(key, torch.tensor(value))
    tokens = torch.zeros(1, OPENAI_METADATA["context_length"], dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        traced = torch.jit.trace_module(clip_model, {"encode_text": tokens}, check_trace=False)
        torch.jit.save(traced, str(path))
    return {k: v.clone() for k, v in clip_model.state_dict().items()}


def open_clip_bin(state: dict[str, torch.Tensor], path: Path) -> None:
    """open_clip's ``open_clip_pytorch_model.bin``: the state dict, torch.save'd."""
    torch.save({k: v.clone() for k, v in state.items()}, path)


def timm_clip_file(path: Path, model: str = "vit_base_patch16_clip_224.openai") -> None:
    """timm's ``model.safetensors`` of a CLIP repository: the image tower under timm's names (tiny tensors: only
    the names matter to the refusal)."""
    import timm
    from safetensors.torch import save_file

    with torch.device("meta"):
        keys = list(timm.create_model(model, pretrained=False).state_dict())
    save_file({key: torch.zeros(1) for key in keys}, str(path))


def sam_release(encoder_state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Meta's ``sam_vit_b_01ec64.pth``: segment_anything's whole vit_b Sam state dict with ``encoder_state`` as its
    image encoder (the rest random); returns what was saved."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    rest = nn.Module()
    rest.prompt_encoder = PromptEncoder(
        embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16
    )
    rest.mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    state = {f"image_encoder.{k}": v.clone() for k, v in encoder_state.items()}
    state |= {k: v.clone() for k, v in rest.state_dict().items()}  # pixel_mean / pixel_std are not persistent
    torch.save(state, path)
    return state


def timm_samvit_file(encoder_state: dict[str, torch.Tensor], path: Path) -> None:
    """timm's ``samvit_base_patch16.sa1b`` model.safetensors: the encoder, MLP ``lin`` -> ``fc``."""
    from safetensors.torch import save_file

    save_file({re.sub(r"\.mlp\.lin([12])\.", r".mlp.fc\1.", k): v.contiguous() for k, v in encoder_state.items()},
              str(path))  # fmt: skip


def dinov2_release(timm_state: dict[str, torch.Tensor], path: Path) -> None:
    """Meta's ``dinov2_vit*14_pretrain.pth``: timm's names plus ``mask_token`` (1 x C)."""
    width = timm_state["cls_token"].shape[-1]
    torch.save({**{k: v.clone() for k, v in timm_state.items()}, "mask_token": torch.zeros(1, width)}, path)


def dinov3_release(timm_state: dict[str, torch.Tensor], periods: torch.Tensor, path: Path) -> dict[str, torch.Tensor]:
    """Meta's ``dinov3_vit*16_pretrain_lvd1689m-*.pth`` from timm's Eva state dict ``timm_state`` (no qkv bias) and
    the RoPE ``periods`` (D_head / 4): the renames back, a zero q / v bias with a k third of ones (masked by
    ``bias_mask``, as LinearKMaskedBias keeps it), ``mask_token`` and the periods in bfloat16; returns what was
    saved."""
    width = timm_state["cls_token"].shape[-1]
    state: dict[str, torch.Tensor] = {}
    for key, value in timm_state.items():
        key = key.replace("reg_token", "storage_tokens").replace(".gamma_1", ".ls1.gamma")
        state[key.replace(".gamma_2", ".ls2.gamma")] = value.clone()
        if key.endswith(".attn.qkv.weight"):
            mask = torch.ones(3 * width)
            mask[width : 2 * width] = 0
            state[key.replace(".weight", ".bias")] = 1 - mask  # q and v zero, k ones (masked)
            state[key.replace(".weight", ".bias_mask")] = mask
    state["mask_token"] = torch.zeros(1, width)
    state["rope_embed.periods"] = periods.to(torch.bfloat16)
    torch.save(state, path)
    return state


CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def radio_release(timm_state: dict[str, torch.Tensor], path: Path, *, patch: int = 16) -> dict[str, torch.Tensor]:
    """NVIDIA's C-RADIOv3-B ``model.safetensors`` from timm's NaFlexVit state dict ``timm_state`` (whose patch
    bias must be zero: RADIO's embedder has none); returns what was saved."""
    from safetensors.torch import save_file

    weight, bias = timm_state["embeds.proj.weight"], timm_state["embeds.proj.bias"]
    assert not bias.any(), "RADIO's patch embedder has no bias"
    width = weight.shape[0]
    model = "radio_model.model."
    channels_first = weight.reshape(width, patch, patch, 3).permute(0, 3, 1, 2).flatten(1)
    state = {
        f"{model}patch_generator.embedder.weight": channels_first,
        f"{model}patch_generator.pos_embed": timm_state["embeds.pos_embed"].reshape(1, -1, width),
        f"{model}patch_generator.cls_token.token": torch.cat(
            [timm_state["embeds.cls_token"][0], timm_state["embeds.reg_token"][0]]
        ),
        **{f"{model}{k}": v for k, v in timm_state.items() if k.startswith("blocks.")},
        "radio_model.input_conditioner.norm_mean": torch.tensor(CLIP_MEAN).view(3, 1, 1),
        "radio_model.input_conditioner.norm_std": torch.tensor(CLIP_STD).view(3, 1, 1),
        "radio_model.summary_idxs": torch.tensor([0, 1, 2]),
        "radio_model.adaptors.teacher.head.weight": torch.ones(4, width),
    }
    state = {k: v.contiguous().clone() for k, v in state.items()}
    save_file(state, str(path))
    return state
