"""DINOv2's released NYU depth heads (linear lin. 1 / lin. 4 and DPT), read from their published files and run on
a DINOv2 backbone as DINOv2 runs them (facebookresearch/dinov2 @ b8931f7: dinov2/hub/depthers.py,
dinov2/hub/depth/{decode_heads,encoder_decoder}.py, dinov2/hub/utils.py ``CenterPadding``,
dinov2/models/vision_transformer.py ``interpolate_pos_encoding``; docs/bridge.md).

Files: ``https://dl.fbaipublicfiles.com/dinov2/<backbone>/<backbone>_nyu_<head>_head.pth``, head ``linear``
(lin. 1), ``linear4`` (lin. 4) or ``dpt``: an mmcv checkpoint, a dict whose ``state_dict`` maps
``decode_head.<name>`` to float32 tensors (the hub loads ``checkpoint["state_dict"]``), beside training
metadata (``meta``) that may hold numpy scalars. It is read with ``torch.load(weights_only=True)`` and an
allow-list of numpy's scalar and array rebuilders (:data:`NUMPY_DATA_GLOBALS`: they build numbers and arrays,
never call other code); any other global is refused. ``backbone.*`` keys (none are expected) are ignored; the
``decode_head.*`` keys must be exactly the head's.

Model, per image (rgb H x W, uint8):

1. ImageNet normalisation, then zero padding (in normalised units) centred to the next multiples of 14
   (480 x 640 -> 490 x 644: 5 / 5 rows, 2 / 2 columns);
2. the backbone's blocks of the head (lin. 1: the last; lin. 4 and DPT: ViT-S/B blocks 3, 6, 9, 12; ViT-L 5, 12, 18,
   24; ViT-g 10, 20, 30, 40, 1-indexed), patch tokens (h x w grid) and class token, no final norm; the position
   embedding resampled as DINOv2 does (bicubic, no antialiasing, scale factor (h + 0.1) / 37, (w + 0.1) / 37);
3. the head: linear -> depthcore's ``linear_probe`` (class token concatenated, x4 bilinear upsampling, no
   BatchNorm, 1 x 1 conv ``conv_depth`` to 256 bins spaced uniformly 0.001..10 m, 'linear' normalisation);
   dpt -> :class:`~depthcore.bridge.dinov2_dpt.DinoV2DptHead`;
4. depth clamped to [0.001, 10] m and resized bilinearly (align_corners False) to H x W: the prediction of the
   padded frame is stretched onto the frame, as DINOv2's ``encode_decode`` does (``ori_shape``);
5. flip test-time augmentation: the mean of (4) and of (4) on the mirrored image, mirrored back.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from depthcore.bridge.dinov2_dpt import DinoV2DptHead
from depthcore.bridge.releases import (
    MAX_DEPTH,
    MIN_DEPTH,
    BridgeError,
    check_head,
    head_blocks,
    head_remote,
    variant,
)
from depthcore.geometry.frame import IMAGENET_MEAN, IMAGENET_STD
from depthcore.io import sha256_of
from depthcore.models.adapters.base import clip_key
from depthcore.models.adapters.linear_probe import LinearProbe, LinearProbeConfig
from depthcore.weights.formats import SAFETENSORS, flatten_tensors, read_weights_file, sniff_format

HEAD_PREFIX = "decode_head."  # the released state dicts' prefix of the head's parameters
IGNORED_PREFIX = "backbone."  # a depther checkpoint's backbone part: the backbone has its own file
PATCH = 14
POS_OFFSET = 0.1  # DINOv2's ``interpolate_offset``
BINS = 256  # the linear heads' bins ('UD': linspace(MIN_DEPTH, MAX_DEPTH, BINS))
UPSAMPLE = 4  # the linear heads' token upsampling


# ------------------------------------------------------------------------------------------------ reading
def _numpy_data_globals() -> list:
    """numpy's rebuilders of scalars and arrays (what mmcv's ``meta`` pickles), for ``torch.serialization``: under
    numpy 2's names and under numpy 1's (``numpy.core.multiarray.*``: files written before numpy 2, as the
    released heads were)."""
    core = getattr(np, "_core", None) or np.core
    found: list = [np.ndarray, np.dtype]
    for name in ("scalar", "_reconstruct"):
        rebuild = getattr(core.multiarray, name)
        found += [rebuild, (rebuild, f"numpy.core.multiarray.{name}")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")]
    return found


NUMPY_DATA_GLOBALS = _numpy_data_globals()


def read_head_tensors(path: Path | str) -> dict[str, torch.Tensor]:
    """The ``decode_head.*`` tensors of a released head file (module docstring), prefix removed; BridgeError in one
    line otherwise. A safetensors file (a converted copy) is read as it is."""
    path = Path(path)
    if not path.is_file():
        raise BridgeError(f"head file {path} does not exist or is not a file")
    if sniff_format(path) == SAFETENSORS:
        tensors = read_weights_file(path).tensors
    else:
        try:
            with torch.serialization.safe_globals(NUMPY_DATA_GLOBALS):
                tree = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            needs = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln), "not only data")
            raise BridgeError(
                f"{path} needs code to load ({needs.split(' was not')[0]}); depthcore never unpickles code: it is not "
                "a released DINOv2 head file"
            ) from None
        except Exception as exc:
            raise BridgeError(
                f"{path} cannot be read as a torch.save file ({type(exc).__name__}): truncated?"
            ) from None
        state = tree.get("state_dict", tree) if isinstance(tree, dict) else tree
        tensors = flatten_tensors(state)
    head = {k.removeprefix(HEAD_PREFIX): v for k, v in tensors.items() if k.startswith(HEAD_PREFIX)}
    other = [k for k in tensors if not k.startswith((HEAD_PREFIX, IGNORED_PREFIX))]
    if not head or other:
        shown = ", ".join(sorted(other or tensors)[:3])
        raise BridgeError(
            f"{path} is not a DINOv2 depth head file: expected an mmcv checkpoint whose state_dict holds "
            f"'{HEAD_PREFIX}*' tensors only, found {len(tensors)} tensors such as {shown}"
        )
    return head


def file_facts(path: Path | str) -> dict:
    """Name, size (bytes) and SHA-256 of a file, for the metrics record."""
    path = Path(path)
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path)}


# ------------------------------------------------------------------------------------------------ heads
def layer_name(block: int) -> str:
    """0-based block -> depthcore's layer name ('block<k>', 1-indexed)."""
    return f"block{block + 1}"


def linear_config(backbone: str, head: str) -> LinearProbeConfig:
    """depthcore's ``linear_probe`` settings equal to DINOv2's released linear head ``head`` on ``backbone``."""
    return LinearProbeConfig(
        layers=tuple(layer_name(b) for b in head_blocks(backbone, head)),
        class_token=True,
        bins=BINS,
        min_depth=MIN_DEPTH,
        max_depth=MAX_DEPTH,
        norm="linear",
        upsample=UPSAMPLE,
        batch_norm=False,
    )


def build_head(backbone: str, head: str, image_size: tuple[int, int]) -> nn.Module:
    """The head module (random weights): a LinearProbe predicting at ``image_size`` (H, W), or the DPT head."""
    v = variant(backbone)
    if check_head(head) == "dpt":
        return DinoV2DptHead(embed_dim=v.embed_dim, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH)
    cfg = linear_config(backbone, head)
    return LinearProbe(cfg, in_channels=[2 * v.embed_dim] * len(cfg.layers), image_size=image_size)


def released_to_module(backbone: str, head: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The released head's tensors (prefix removed) under the module's names: ``conv_depth.*`` -> ``conv.*`` for the
    linear heads, as they are for the DPT head."""
    if check_head(head) == "dpt":
        return dict(tensors)
    return {
        ("conv." + k.removeprefix("conv_depth.") if k.startswith("conv_depth.") else k): v for k, v in tensors.items()
    }


def load_head(backbone: str, head: str, path: Path | str, image_size: tuple[int, int]) -> nn.Module:
    """The released head file at ``path`` as a module, loaded strictly (missing, unexpected or mis-shaped keys:
    BridgeError in one line naming the expected file)."""
    module = build_head(backbone, head, image_size)
    state = released_to_module(backbone, head, read_head_tensors(path))
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        want = head_remote(backbone, head).filename
        detail = "; ".join(
            f"{label} {keys[:3]}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes))
            if keys
        )
        raise BridgeError(f"{path} does not fit DINOv2's {head} head on {backbone} (expected {want}): {detail}")
    module.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return module.eval()


# ------------------------------------------------------------------------------------------------ backbone
def meta_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta's ``dinov2_vit*14_pretrain.pth`` state dict in timm's names: ``mask_token`` dropped, ViT-g's SwiGLU
    ``mlp.w12`` / ``mlp.w3`` -> ``mlp.fc1`` / ``mlp.fc2`` (timm's own mapping); timm's files pass unchanged."""
    out = {}
    for key, value in state.items():
        if key == "mask_token":
            continue
        out[key.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")] = value
    return out


def load_backbone(backbone: str, weights: Path | str | None, *, init_seed: int = 0) -> nn.Module:
    """The timm DINOv2 VisionTransformer of ``backbone``, frozen, float32: from ``weights`` (Meta's pretrain
    .pth or timm's model.safetensors, loaded strictly) or, with None, seeded random weights (depthcore's
    informative init: ``pretrained: none``)."""
    from depthcore.models.backbones.zoo._vit import build_timm_vit

    v = variant(backbone)
    state = None
    if weights is not None:
        state = meta_to_timm(flatten_tensors(read_weights_file(weights).tensors))
        if any(k.startswith(HEAD_PREFIX) for k in state):
            raise BridgeError(f"{weights} is a depth head file, not a {backbone} backbone file ({v.timm_model})")
    cfg = SimpleNamespace(init_seed=init_seed, pretrained="none" if weights is None else str(weights))
    return build_timm_vit(model=v.timm_model, name=backbone, cfg=cfg, state_dict=state).vit.eval()


def dinov2_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """1 x (1 + M^2) x C table -> 1 x (1 + h w) x C for an h x w grid, as DINOv2's ``interpolate_pos_encoding``:
    unchanged for h = w = M, else bicubic (no antialiasing) with scale factors ((h + 0.1) / M, (w + 0.1) / M)."""
    n = pos_embed.shape[1] - 1
    m = math.isqrt(n)
    h, w = grid
    if h * w == n and h == w:
        return pos_embed
    table = pos_embed[:, 1:].float().reshape(1, m, m, -1).permute(0, 3, 1, 2)
    scale = ((h + POS_OFFSET) / m, (w + POS_OFFSET) / m)
    table = F.interpolate(table, scale_factor=scale, mode="bicubic", antialias=False)
    if tuple(table.shape[-2:]) != (h, w):
        raise BridgeError(f"position embedding resampled to {tuple(table.shape[-2:])}, not the grid {grid}")
    patches = table.permute(0, 2, 3, 1).reshape(1, h * w, -1)
    return torch.cat([pos_embed[:, :1].float(), patches], dim=1).to(pos_embed.dtype)


def block_tokens(vit: nn.Module, x: torch.Tensor, blocks: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """B x 3 x H x W (multiples of 14, normalised) -> per 0-based block in ``blocks``: (B x C x h x w patch tokens,
    B x C class token), the block's output without the final norm (DINOv2's ``get_intermediate_layers(norm=False)``)."""
    b, _, height, width = x.shape
    grid = (height // PATCH, width // PATCH)
    patches = vit.patch_embed(x).reshape(b, grid[0] * grid[1], -1)  # timm (dynamic size): B x h x w x C
    tokens = torch.cat([vit.cls_token.expand(b, -1, -1), patches], dim=1) + dinov2_pos_embed(vit.pos_embed, grid)
    tokens = vit.norm_pre(tokens)
    out = {}
    for index, block in enumerate(vit.blocks[: max(blocks) + 1]):
        tokens = block(tokens)
        if index in blocks:
            maps = tokens[:, 1:].transpose(1, 2).reshape(b, -1, *grid)
            out[index] = (maps.contiguous(), tokens[:, 0])
    return [out[i] for i in blocks]


def centre_pad(x: torch.Tensor, multiple: int = PATCH) -> torch.Tensor:
    """B x C x H x W -> zero-padded to the next multiples of ``multiple``, the padding split evenly (the extra row or
    column at the bottom / right), as DINOv2's ``CenterPadding``."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        extra = math.ceil(size / multiple) * multiple - size
        pads += [extra // 2, extra - extra // 2]
    return F.pad(x, pads)


class DinoV2Depther(nn.Module):
    """Backbone + released head -> depth B x 1 x H x W in metres (module docstring, steps 1-5)."""

    def __init__(self, backbone: str, head: str, vit: nn.Module, head_module: nn.Module):
        super().__init__()
        self.backbone_name, self.head_name = backbone, head
        self.blocks = head_blocks(backbone, head)
        self.vit, self.head = vit, head_module
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[:, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[:, None, None], persistent=False)

    def single(self, rgb: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W in [0, 1] -> B x 1 x H x W metres, without flip averaging (steps 1-4)."""
        size = tuple(rgb.shape[-2:])
        layers = block_tokens(self.vit, centre_pad((rgb.float() - self.mean) / self.std), self.blocks)
        if isinstance(self.head, LinearProbe):
            batch = {}
            for layer, (maps, cls) in zip(self.head.cfg.layers, layers, strict=True):
                batch[clip_key(layer)], batch[clip_key(layer) + "_cls"] = maps, cls
            self.head.image_size = size
            return self.head(batch)
        depth = self.head(layers).clamp(MIN_DEPTH, MAX_DEPTH)
        return F.interpolate(depth, size=size, mode="bilinear", align_corners=False)

    @torch.no_grad()
    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W in [0, 1] -> B x 1 x H x W metres, the mean with the mirrored image's (step 5)."""
        return 0.5 * (self.single(rgb) + self.single(rgb.flip(-1)).flip(-1))
