"""DINOv2's released DPT depth head (``DPTHead`` of facebookresearch/dinov2 @ b8931f7,
dinov2/hub/depth/decode_heads.py and dinov2/eval/depth/models/decode_heads/dpt_head.py), rebuilt with the
released files' parameter names so that a ``*_nyu_dpt_head.pth`` loads strictly.

Settings of the released heads (dinov2/hub/depthers.py ``_make_dinov2_dpt_depth_head`` and the released mmcv
config ``dinov2_vitl14_nyu_dpt_config.py``): ``channels`` 256, ``post_process_channels`` = C / 8, C / 4, C / 2, C
for embedding width C, ``readout_type='project'``, ``norm_cfg=None``, ReLU activations, no ``classify``: the
released DPT head **regresses** depth (relu(x) + min_depth), it has no bins.

Input: four layers, shallow to deep, each (B x C x h x w patch tokens, B x C class token) on one h x w patch grid.

1. reassemble, per layer i: readout ``Linear(2C, C) + GELU`` over [token, class token]; 1 x 1 conv (with bias) to
   P_i channels; resize: i = 0 a 4 x 4 stride-4 transposed conv (4h x 4w), i = 1 a 2 x 2 stride-2 transposed conv
   (2h x 2w), i = 2 none (h x w), i = 3 a 3 x 3 stride-2 conv, padding 1 (ceil(h / 2) x ceil(w / 2));
2. ``convs``: a 3 x 3 conv P_i -> 256, no bias;
3. fusion, deepest first: out = F_0(f_3); out = F_k(out, f_(3-k)) for k = 1, 2, 3, where
   F(out, skip) = project(up2(RCU_2(out + RCU_1(resize(skip to out's grid, align_corners False))))) (F_0 without
   the skip), up2: x2 bilinear (align_corners True), project: 1 x 1 conv with bias; RCU(x) =
   x + conv(relu(conv(relu(x)))), 3 x 3 convs without bias (pre-activation residual unit);
4. ``project``: 3 x 3 conv (bias) + ReLU; ``conv_depth``: 3 x 3 conv 256 -> 128, x2 bilinear (align_corners True),
   3 x 3 conv 128 -> 32, ReLU, 1 x 1 conv 32 -> 1; depth = relu(that) + min_depth, B x 1 x H' x W' metres, where
   H' = 2 x 2 x 2 x 2 x 2 x ceil(h / 2) (e.g. 35 x 46 tokens -> 576 x 736). The caller clamps it to
   [min_depth, max_depth] and resizes it to the image (DINOv2's ``encode_decode``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_LAYERS = 4
CHANNELS = 256  # the released heads' fusion width (``channels``)
HEAD_HIDDEN = 32  # conv_depth's last hidden width
FUSION_ALIGN_CORNERS = True  # the x2 upsampling in every fusion block and in conv_depth
SKIP_ALIGN_CORNERS = False  # a skip resized to the running path's grid


def post_process_channels(embed_dim: int) -> list[int]:
    """The released heads' reassembly widths: C / 8, C / 4, C / 2, C."""
    return [embed_dim // 2 ** (N_LAYERS - 1 - i) for i in range(N_LAYERS)]


class ConvUnit(nn.Module):
    """A conv under the name ``conv`` (mmcv's ConvModule layout), optionally preceded (``pre_relu``) or followed
    (``post_relu``) by a ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, *, bias: bool, pre_relu=False, post_relu=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)
        self.pre_relu, self.post_relu = pre_relu, post_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.relu(x) if self.pre_relu else x)
        return F.relu(x) if self.post_relu else x


class ResidualUnit(nn.Module):
    """Pre-activation residual unit, B x F x h x w -> same: x + conv2(relu(conv1(relu(x)))), no biases."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = ConvUnit(features, features, 3, bias=False, pre_relu=True)
        self.conv2 = ConvUnit(features, features, 3, bias=False, pre_relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class FusionBlock(nn.Module):
    """One fusion step (module docstring, step 3); ``with_skip`` False for the deepest (no ``res_conv_unit1``)."""

    def __init__(self, features: int, *, with_skip: bool):
        super().__init__()
        self.project = ConvUnit(features, features, 1, bias=True)
        self.res_conv_unit1 = ResidualUnit(features) if with_skip else None
        self.res_conv_unit2 = ResidualUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            if skip.shape != x.shape:
                skip = F.interpolate(skip, size=x.shape[-2:], mode="bilinear", align_corners=SKIP_ALIGN_CORNERS)
            x = x + self.res_conv_unit1(skip)
        x = self.res_conv_unit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=FUSION_ALIGN_CORNERS)
        return self.project(x)


class Reassemble(nn.Module):
    """Readout projection, 1 x 1 projection and resize of the four layers (module docstring, step 1)."""

    def __init__(self, embed_dim: int, widths: list[int]):
        super().__init__()
        self.projects = nn.ModuleList(ConvUnit(embed_dim, w, 1, bias=True) for w in widths)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(widths[0], widths[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(widths[1], widths[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(widths[3], widths[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        self.readout_projects = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * embed_dim, embed_dim), nn.GELU()) for _ in widths
        )

    def forward(self, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        out = []
        for i, (tokens, cls) in enumerate(layers):
            b, c, h, w = tokens.shape
            seq = tokens.flatten(2).transpose(1, 2)  # B x hw x C
            seq = self.readout_projects[i](torch.cat([seq, cls[:, None, :].expand_as(seq)], dim=-1))
            x = seq.transpose(1, 2).reshape(b, c, h, w)
            out.append(self.resize_layers[i](self.projects[i](x)))
        return out


class DepthOut(nn.Module):
    """``conv_depth`` (module docstring, step 4): B x F x h x w -> B x 1 x 2h x 2w raw depth logits."""

    def __init__(self, features: int):
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv2d(features, features // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=FUSION_ALIGN_CORNERS),
            nn.Conv2d(features // 2, HEAD_HIDDEN, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(HEAD_HIDDEN, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class DinoV2DptHead(nn.Module):
    """DINOv2's released DPT depth head for embedding width ``embed_dim`` (module docstring); its state dict has
    the released file's names without the ``decode_head.`` prefix."""

    def __init__(self, *, embed_dim: int, min_depth: float, max_depth: float, channels: int = CHANNELS):
        super().__init__()
        widths = post_process_channels(embed_dim)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.reassemble_blocks = Reassemble(embed_dim, widths)
        self.convs = nn.ModuleList(ConvUnit(w, channels, 3, bias=False) for w in widths)
        self.fusion_blocks = nn.ModuleList(FusionBlock(channels, with_skip=i > 0) for i in range(N_LAYERS))
        self.project = ConvUnit(channels, channels, 3, bias=True, post_relu=True)
        self.conv_depth = DepthOut(channels)

    def forward(self, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Four (B x C x h x w tokens, B x C class token), shallow to deep -> B x 1 x H' x W' depth in metres,
        >= min_depth (not yet clamped above nor resized: the caller's step)."""
        if len(layers) != N_LAYERS:
            raise ValueError(f"DINOv2's DPT head reads {N_LAYERS} layers, got {len(layers)}")
        feats = [conv(x) for conv, x in zip(self.convs, self.reassemble_blocks(layers), strict=True)]
        out = self.fusion_blocks[0](feats[-1])
        for k in range(1, N_LAYERS):
            out = self.fusion_blocks[k](out, feats[-(k + 1)])
        return F.relu(self.conv_depth(self.project(out))) + self.min_depth
