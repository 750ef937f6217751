"""What the zoo's open_clip backbones with an attention-pooled (MAP) timm image tower share (``siglip2.py``: SigLIP 2
ViT-B/16, ``pe_core.py``: Perception Encoder Core B/16): the frozen backbone, its dense path for the DepthCLIP head,
the fast seeded random init, and building the model without open_clip's own (slow) init.

Layers: ``block1``..``block12``, the token sequence after each residual block of the timm trunk (before the final
norm), patch tokens as B x 768 x h x w (plus ``{layer}_cls``, B x 768, where the trunk has a class token: PE), and
``dense`` (B x D x h x w, D the joint image-text size: 768 SigLIP 2, 1024 PE), the layer the DepthCLIP head reads.

Input: the 416 x 544 crop, not resized (multiples of 16: a 26 x 34 grid), normalised with the model's own statistics
(both (0.5, 0.5, 0.5) / (0.5, 0.5, 0.5): open_clip's ``_slpcfg`` / ``_pecfg`` in open_clip/pretrained.py). The
position embedding of the 224 x 224 training grid (14 x 14) is resampled to the input's grid as each model's own
code does (see each variant's module).

``dense``: MaskCLIP's idea for a pooling head made of attention. CLIP pools with a class token, and MaskCLIP reads
every patch token through the last block's value and output projections, skipping the attention's mixing. SigLIP 2
and PE pool with a one-query attention pool (timm ``AttentionPoolLatent``: the learned latent query attends to all
the trunk's final-normed tokens t_1..t_N, y = proj(sum_i a_i kv_v(t_i)); then y + mlp(norm(y)); then the model's
projection: PE's ``head`` Linear 768 -> 1024, SigLIP 2 none). Its per-token equivalent replaces the attention weights
a_i by a one-hot on token j: d_j = f(proj(kv_v(t_j))) with f(y) = head(fc_norm(y + mlp(norm(y)))), the value half of
``kv`` and the output projection ``proj`` applied to every token, then the pool's MLP residual and the final
projection exactly as the pooled path applies them. With a single token (N = 1, the softmax weight is 1) d_1 is the
pooled image embedding itself; tests/test_backbones_text.py checks that identity against open_clip's own forward.
Not L2-normalised (the head normalises).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from depthcore.models.backbones.clip import quiet_random_init
from depthcore.models.backbones.zoo._vit import BLOCK_PREFIX, block_index, block_layers, tokens_to_map
from depthcore.models.backbones.zoo.base import (
    CLS_SUFFIX,
    CROP_SIZE,
    BackboneError,
    FrozenBackbone,
    LayerSpec,
    WeightsRelease,
    check_state_dict,
    instantiate,
    unwrap_state_dict,
)

DENSE = "dense"
DEPTH = 12
LAYERS = (*block_layers(DEPTH), DENSE)
VISUAL_PREFIX = "visual.trunk."  # open_clip's names of a timm image tower
OPEN_CLIP_TEXT_PREFIX = "text."  # open_clip's names of a CustomTextCLIP text tower
TIMM_IMAGE_KEYS = ("patch_embed.proj.weight", "attn_pool.latent")  # timm's image-tower-only files
POS_STD = 0.02  # random init: position embeddings, class token, attention-pool latent
TOKEN_STD = 1.0  # random init: token embeddings (the text tower's LayerNorms follow)
LOGIT_SCALE_INIT = 2.302585  # log(10): SigLIP's t' initialisation (the value is unused by depthcore)
LOGIT_BIAS_INIT = -10.0  # SigLIP's b initialisation (the value is unused by depthcore)


@dataclass(frozen=True)
class MapVariant:
    """One MAP backbone: its zoo ``name``, open_clip ``model``, pixel statistics and how its position embedding
    follows the grid (``resample``: grid table 1 x C x 14 x 14 -> 1 x C x h x w; ``absolute_rope``: RoPE on the
    integer patch positions, as PE's own code, instead of timm's rescaling to the 14 x 14 pretraining grid)."""

    name: str
    model: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]
    absolute_rope: bool = False


class MapClipBackbone(FrozenBackbone):
    """Frozen open_clip CustomTextCLIP with a timm MAP image tower: block token maps, the dense path (see the module
    docstring) and prompt embeddings (``tokenize``: strings -> K x L token ids, the model's own tokenizer)."""

    text, zeroshot_layer = True, DENSE

    def __init__(self, clip_model: nn.Module, *, variant: MapVariant, tokenize: Callable[[list[str]], torch.Tensor]):
        super().__init__()
        self.name, self.variant, self.clip = variant.name, variant, clip_model
        self.tokenize = tokenize
        trunk = clip_model.visual.trunk
        self.patch = int(trunk.patch_embed.proj.kernel_size[0])
        self.class_token = trunk.cls_token is not None
        self.input_size = CROP_SIZE
        self.mean, self.std = variant.mean, variant.std
        self.embed_dim = self._joint_dim()
        grid = (CROP_SIZE[0] // self.patch, CROP_SIZE[1] // self.patch)
        width = int(trunk.embed_dim)
        self.layer_specs = {name: LayerSpec(width, self.patch, grid) for name in block_layers(len(trunk.blocks))}
        self.layer_specs[DENSE] = LayerSpec(self.embed_dim, self.patch, grid)
        self.freeze()

    def _joint_dim(self) -> int:
        """D: the image embedding size (the trunk's head output, else its width)."""
        head = self.clip.visual.trunk.head
        return int(head.out_features) if isinstance(head, nn.Linear) else int(self.clip.visual.trunk.embed_dim)

    @property
    def library_model(self) -> nn.Module:
        return self.clip

    @property
    def trunk(self) -> nn.Module:
        return self.clip.visual.trunk

    # ------------------------------------------------------------------------------------------ geometry
    def grid_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(prefix entries 1 x P x C, grid entries 1 x C x 14 x 14) of the trunk's position embedding."""
        trunk = self.trunk
        table = trunk.pos_embed
        side = int(round((table.shape[1] - (0 if trunk.no_embed_class else trunk.num_prefix_tokens)) ** 0.5))
        prefix = table[:, : table.shape[1] - side * side]
        grid = table[:, table.shape[1] - side * side :].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        return prefix, grid

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """1 x (P + h * w) x C: the table's prefix entries (PE's class token), then its grid entries resampled to
        ``grid`` by the variant's own rule (the table itself at 14 x 14)."""
        prefix, table = self.grid_table()
        resized = table if tuple(table.shape[-2:]) == tuple(grid) else self.variant.resample(table, grid)
        return torch.cat([prefix, resized.flatten(2).transpose(1, 2).to(prefix.dtype)], dim=1)

    def rope_embedding(self, grid: tuple[int, int]) -> torch.Tensor | None:
        """The trunk's rotary embedding (h * w x 2 * dim: sin, cos) for ``grid``; None without RoPE. With
        ``absolute_rope`` the positions are the integer patch indices (+ the trunk's offset for the class token),
        not rescaled to the pretraining grid."""
        rope = getattr(self.trunk, "rope", None)
        if rope is None:
            return None
        with _no_reference_shape(rope, self.variant.absolute_rope):
            return rope._build_embed_cat(list(grid), rope.bands)

    # ------------------------------------------------------------------------------------------ forward
    def tokens(self, x: torch.Tensor, last: int) -> tuple[list[torch.Tensor], tuple[int, int], torch.Tensor | None]:
        """B x 3 x H x W -> ([B x N x C after each block up to ``last`` (0-based)], grid, rope)."""
        trunk = self.trunk
        patches = trunk.patch_embed.proj(x.to(trunk.patch_embed.proj.weight.dtype))  # B x C x h x w
        grid = (int(patches.shape[-2]), int(patches.shape[-1]))
        tokens = trunk.patch_embed.norm(patches.flatten(2).transpose(1, 2))
        pos = self.position_embedding(grid).to(tokens.dtype)
        prefix = [] if trunk.cls_token is None else [trunk.cls_token.expand(tokens.shape[0], -1, -1)]
        if trunk.no_embed_class:
            tokens = torch.cat([*prefix, tokens + pos], dim=1)
        else:
            tokens = torch.cat([*prefix, tokens], dim=1) + pos
        tokens = trunk.norm_pre(tokens)
        rope = self.rope_embedding(grid)
        outputs = []
        for block in trunk.blocks[: last + 1]:
            tokens = block(tokens) if rope is None else block(tokens, rope=rope)
            outputs.append(tokens)
        return outputs, grid, rope

    def dense_tokens(self, final: torch.Tensor) -> torch.Tensor:
        """B x N x C tokens after the trunk's final norm -> B x N x D: the attention pool's value and output
        projections per token, then its MLP residual and the model's projection (see the module docstring)."""
        pool, width = self.trunk.attn_pool, final.shape[-1]
        value = F.linear(final, pool.kv.weight[width:], pool.kv.bias[width:] if pool.kv.bias is not None else None)
        y = pool.proj(value)
        y = y + pool.mlp(pool.norm(y))
        return self.project(y)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """The attention pool's output (..., C) -> the image embedding (..., D): the trunk's fc_norm and head, then
        open_clip's own head (empty for these models), as ``encode_image`` applies them."""
        return self.clip.visual.head(self.trunk.head(self.trunk.fc_norm(pooled)))

    def forward_features(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """B x 3 x H x W (multiples of 16) -> {block<k>: B x 768 x H/16 x W/16 (+ block<k>_cls: B x 768 with a
        class token), dense: B x D x H/16 x W/16}."""
        self.check_layers(layers)
        self.check_input(x, self.patch)
        wanted = set(layers)
        depth = len(self.trunk.blocks)
        last = depth - 1 if DENSE in wanted else max(block_index(name) for name in layers)
        outputs, grid, _ = self.tokens(x, last)
        skip = int(self.trunk.num_prefix_tokens)
        out: dict[str, torch.Tensor] = {}
        for index, tokens in enumerate(outputs):
            name = f"{BLOCK_PREFIX}{index + 1}"
            if name in wanted:
                out[name] = tokens_to_map(tokens[:, skip:], grid)
                if self.class_token:
                    out[name + CLS_SUFFIX] = tokens[:, 0]
        if DENSE in wanted:
            out[DENSE] = tokens_to_map(self.dense_tokens(self.trunk.norm(outputs[-1]))[:, skip:], grid)
        keys = []
        for name in layers:
            keys.append(name)
            if name != DENSE and self.class_token:
                keys.append(name + CLS_SUFFIX)
        return {key: out[key] for key in keys}

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """prompts: K strings -> K x D text embeddings (the model's own tokenizer and text tower), L2-normalised."""
        if not prompts:
            raise ValueError("encode_text needs at least one prompt")
        tokens = self.tokenize(list(prompts)).to(self.clip.text.token_embedding.weight.device)
        return F.normalize(self.clip.encode_text(tokens).float(), dim=-1)


@contextlib.contextmanager
def _no_reference_shape(rope: nn.Module, active: bool) -> Iterator[None]:
    """timm's RoPE with ``ref_feat_shape`` None for the block (positions not rescaled), when ``active``."""
    saved = rope.ref_feat_shape
    if active:
        rope.ref_feat_shape = None
    try:
        yield
    finally:
        rope.ref_feat_shape = saved


# ------------------------------------------------------------------------------------------ building
def create_map_clip(model: str, device: str) -> nn.Module:
    """open_clip's ``model`` (float32) on ``device`` without its own random init: built on the meta device (no
    weights drawn: open_clip's and timm's truncated-normal init takes ~7 s for these 375-450 M parameters), then
    given uninitialised storage on ``device`` and its non-persistent buffers recomputed (timm's RoPE tables, the text
    tower's causal mask). Every parameter must then be loaded or drawn (:func:`informative_init`)."""
    import open_clip

    with quiet_random_init(), _quiet_timm(), torch.device("meta"):
        clip_model = open_clip.create_model(model, pretrained=None, device="meta")
    if device == "meta":
        return clip_model
    return with_buffers(clip_model.to_empty(device=device), device)


def with_buffers(clip_model: nn.Module, device: str) -> nn.Module:
    """``clip_model`` with its non-persistent buffers computed on ``device`` (they are not in any state dict):
    timm's RoPE bands and table (``init_non_persistent_buffers``), the text tower's causal mask."""
    for module in clip_model.modules():
        if hasattr(module, "init_non_persistent_buffers"):
            module.to_empty(device=device)  # a RoPE module holds buffers only
            module.init_non_persistent_buffers()
    text = clip_model.text
    if getattr(text, "attn_mask", None) is not None:
        text.attn_mask = text.build_causal_mask().to(device)
    return clip_model


@contextlib.contextmanager
def _quiet_timm() -> Iterator[None]:
    level = logging.getLogger("timm").level
    logging.getLogger("timm").setLevel(logging.ERROR)
    try:
        yield
    finally:
        logging.getLogger("timm").setLevel(level)


def informative_init(clip_model: nn.Module) -> None:
    """Seeded random weights for the whole model, drawn uniformly (3x faster than normal draws; the variances are
    what matters): every Linear / conv weight with variance 1 / fan_in (variance preserving; the trunks have no
    LayerScale, so each block changes the features by O(1): block outputs std ~1 -> ~3 and neighbouring blocks'
    cosine < 0.99), biases 0, LayerNorms 1 and 0, token embeddings std TOKEN_STD, position embeddings, class token
    and pool latent std POS_STD, a text projection matrix 1 / fan_in, SigLIP's logit scale and bias their initial
    values. Call seeded."""
    done: set[int] = set()
    for module in clip_model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in = module.weight[0].numel()
            _uniform(module.weight, fan_in**-0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            _uniform(module.weight, TOKEN_STD)
        else:
            continue
        done.update(id(p) for p in module.parameters(recurse=False))
    for name, param in clip_model.named_parameters():
        if id(param) in done:
            continue
        if name == "logit_scale":
            nn.init.constant_(param, LOGIT_SCALE_INIT)
        elif name == "logit_bias":
            nn.init.constant_(param, LOGIT_BIAS_INIT)
        elif name.endswith("text_projection"):
            _uniform(param, param.shape[0] ** -0.5)
        else:
            _uniform(param, POS_STD)


def _uniform(param: torch.Tensor, std: float) -> None:
    """U(-a, a) with a = sqrt(3) * std (standard deviation ``std``)."""
    bound = 3**0.5 * std
    nn.init.uniform_(param, -bound, bound)


def build_map_backbone(
    variant: MapVariant,
    *,
    init_seed: int,
    state_dict: dict[str, torch.Tensor] | None,
    tokenize: Callable[[list[str]], torch.Tensor],
    source: str = "",
) -> MapClipBackbone:
    """The frozen backbone of ``variant`` on the CPU, float32: ``state_dict`` (open_clip's names) checked against
    the meta skeleton (BackboneError naming missing, unexpected and mis-shaped keys) and assigned as float32 copies,
    the buffers then computed (no storage drawn or filled for nothing); or None: seeded random weights
    (:func:`informative_init`, ``init_seed``; the global RNG is left as it was)."""
    if state_dict is None:
        clip_model = instantiate(
            lambda device: create_map_clip(variant.model, device),
            backbone=variant.name,
            init_seed=init_seed,
            state_dict=None,
            init=informative_init,
        )
    else:
        skeleton = create_map_clip(variant.model, "meta")
        expected = skeleton.state_dict()
        check_state_dict(expected, state_dict, backbone=variant.name, source=source)
        weights = {k: v.to(device="cpu", dtype=expected[k].dtype, copy=True) for k, v in state_dict.items()}
        skeleton.load_state_dict(weights, strict=True, assign=True)
        clip_model = with_buffers(skeleton, "cpu")
    return MapClipBackbone(clip_model, variant=variant, tokenize=tokenize)


def open_clip_keys(state, *, backbone: str, timm_files: str) -> dict[str, torch.Tensor]:
    """The tensors of an open_clip file of a CustomTextCLIP (``visual.trunk.*``, ``text.*``, ``logit_*``):
    'state_dict' / 'module.' unwrapped; BackboneError for a file without ``visual.trunk.*`` keys (timm's image-tower
    files, named ``timm_files``, said so)."""
    state = unwrap_state_dict(state)
    if not any(key.startswith(VISUAL_PREFIX) for key in state):
        timm = any(key in state for key in TIMM_IMAGE_KEYS)
        raise BackboneError(
            f"it has no visual.trunk.* entries: not an open_clip checkpoint of {backbone}"
            + (f" (its keys are timm's: {timm_files}, the image tower alone)" if timm else "")
        )
    return state


def hf_open_clip_release(repo: str, model: str, *, citation: str) -> WeightsRelease:
    """Tag ``official``: open_clip's ``open_clip_model.safetensors`` of Hugging Face ``repo`` (both towers; SHA-256
    announced by the hub at download time: X-Linked-Etag), Apache-2.0 as open_clip's model cards state."""
    return WeightsRelease(
        tag="official",
        url=f"https://huggingface.co/{repo}/resolve/main/open_clip_model.safetensors",
        filename=f"{model}-open_clip_model.safetensors",
        sha256=None,
        format="safetensors",
        licence="Apache-2.0",
        citation=citation,
    )
