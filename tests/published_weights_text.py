"""Stand-ins for the weights files of the zoo's open_clip backbones with text towers (SigLIP 2, PE-Core), each in
its published layout, built from open_clip's own state dict of the model (full size, random weights):

- open_clip's Hugging Face files (``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin`` of
  timm/ViT-B-16-SigLIP2 and timm/PE-Core-B-16): the open_clip state dict itself;
- Meta's ``PE-Core-B16-224.pt`` (facebook/PE-Core-B16-224): perception_models' ``CLIP`` state dict
  (core/vision_encoder/pe.py): ``CLIP`` is the text transformer itself (top-level ``token_embedding``,
  ``positional_embedding``, ``transformer.resblocks.<i>.{ln_1, attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc,
  mlp.c_proj}``, ``ln_final``, ``text_projection``, ``logit_scale``) with the image tower as ``visual``:
  ``conv1`` (no bias), ``class_embedding`` (C), ``positional_embedding`` ((1 + 14 * 14) x C), ``ln_pre``, the same
  block names under ``transformer.resblocks``, ``ln_post``, ``attn_pool.{probe, attn.in_proj_* (q, k, v packed),
  attn.out_proj, layernorm, mlp.c_fc, mlp.c_proj}`` and ``proj`` (C x D, applied as ``x @ proj``);
- timm's image-tower-only ``model.safetensors`` (timm/vit_base_patch16_siglip_224.v2_webli,
  timm/vit_pe_core_base_patch16_224.fb): the trunk's own names, no text tower.

The tensors are shared with the given state dict, not copied (the conversions are checked key by key).
"""

from __future__ import annotations

import torch

TRUNK = "visual.trunk."
BLOCK_NAMES = {  # timm's block names -> OpenAI-CLIP / perception_models' names
    "norm1.": "ln_1.",
    "norm2.": "ln_2.",
    "attn.qkv.": "attn.in_proj_",
    "attn.proj.": "attn.out_proj.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}
POOL_NAMES = {
    "attn_pool.latent": "attn_pool.probe",
    "attn_pool.proj.": "attn_pool.attn.out_proj.",
    "attn_pool.norm.": "attn_pool.layernorm.",
    "attn_pool.mlp.fc1.": "attn_pool.mlp.c_fc.",
    "attn_pool.mlp.fc2.": "attn_pool.mlp.c_proj.",
}
OTHER_NAMES = {
    "patch_embed.proj.weight": "conv1.weight",
    "norm_pre.weight": "ln_pre.weight",
    "norm_pre.bias": "ln_pre.bias",
    "norm.weight": "ln_post.weight",
    "norm.bias": "ln_post.bias",
}


def meta_pe_release(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta's ``PE-Core-B16-224.pt`` layout of open_clip's PE-Core state dict ``state``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("text."):
            out[key.removeprefix("text.")] = value
        elif not key.startswith(TRUNK):
            out[key] = value  # logit_scale
    trunk = {k.removeprefix(TRUNK): v for k, v in state.items() if k.startswith(TRUNK)}
    for name, value in trunk.items():
        if name.startswith("blocks."):
            index, rest = name.removeprefix("blocks.").split(".", 1)
            for old, new in BLOCK_NAMES.items():
                if rest.startswith(old):
                    rest = new + rest.removeprefix(old)
                    break
            out[f"visual.transformer.resblocks.{index}.{rest}"] = value
        elif name in OTHER_NAMES:
            out["visual." + OTHER_NAMES[name]] = value
        elif name == "cls_token":
            out["visual.class_embedding"] = value.reshape(-1)
        elif name == "pos_embed":
            out["visual.positional_embedding"] = value[0]
        elif name == "head.weight":
            out["visual.proj"] = value.t()
        elif name == "head.bias":
            assert torch.count_nonzero(value) == 0, "Meta's proj has no bias"
        elif name.startswith(("attn_pool.q.", "attn_pool.kv.")):
            continue  # packed below
        else:
            for old, new in POOL_NAMES.items():
                if name.startswith(old):
                    out["visual." + new + name.removeprefix(old)] = value
                    break
            else:
                raise KeyError(f"no Meta name for {name}")
    for kind in ("weight", "bias"):
        packed = torch.cat([trunk[f"attn_pool.q.{kind}"], trunk[f"attn_pool.kv.{kind}"]])
        out[f"visual.attn_pool.attn.in_proj_{kind}"] = packed
    return out


def timm_image_tower(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's image-tower-only ``model.safetensors`` of the same model: the trunk under its own names."""
    return {k.removeprefix(TRUNK): v for k, v in state.items() if k.startswith(TRUNK)}
