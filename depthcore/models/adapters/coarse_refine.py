"""Coarse / Refined adapter, as published (the paper's Table 2; the authors' ``eigen/model/depth_coarse.py``
and ``depth_refine.py``): Eigen et al.'s coarse/fine design with CLIP's zero-shot map as the coarse input.

- input: the soft zero-shot map at layer4 resolution (13 x 17 on NYUv2): the adapters' cosine head
  (:func:`depthcore.models.depthclip.cosine_depth`) at ``temperature`` 0.1, no clamp;
- coarse (:class:`Coarse`): flattened (row-major) -> Linear(221, hidden 4096) -> Linear(4096, 104 * 136), no
  nonlinearity, as B x 1 x H/4 x W/4 (stride 4), metres;
- refine (:class:`Refine`, ``mode: coarse_refined``): the ImageNet-normalised crop -> conv 9 x 9 stride 2
  (3 -> 63) -> ReLU -> 2 x 2 max-pool, the coarse map concatenated as channel 64, conv 5 x 5 (64) -> ReLU ->
  conv 5 x 5 -> 1: the depth, used directly (no residual);
- output: the coarse (or refined) depth clamped to [0, 10] m per pass, as the authors' loop does in training and
  test (``eigen/engine.py``); the coarse map fed to the refine net is not clamped.

``training: two_stage`` (published) trains the coarse net first (its own preset), then freezes it while the
refine layers train (the adapter's two training phases, :meth:`CoarseFineConfig.phases`); ``joint`` trains both
at once.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from depthcore.geometry.frame import normalise_imagenet
from depthcore.models.adapters.base import (
    PUBLISHED_MAX_DEPTH,
    WHOLE_MODEL,
    AdapterConfig,
    AdapterContext,
    DepthAdapter,
    Phase,
    check_divisible,
    clip_key,
)
from depthcore.models.adapters.registry import register
from depthcore.models.heads.depthclip import cosine_depth

FINE_STRIDE = 4  # output stride of the coarse map and of the refine net
REFINE_FEATURES, REFINE_CHANNELS = 63, 64
COARSE_PHASE, REFINE_PHASE = "coarse", "refine"


class CoarseFineConfig(AdapterConfig):
    """Settings shared by the coarse/fine adapters: ``mode`` (coarse alone or coarse + refine) and how the
    two parts are trained; their published presets have a coarse and a refine part."""

    preset_parts: ClassVar[tuple[str, ...]] = (COARSE_PHASE, REFINE_PHASE)

    mode: Literal["coarse", "coarse_refined"]
    training: Literal["two_stage", "joint"]
    hidden: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _two_stages_need_two_parts(self) -> CoarseFineConfig:
        if self.training == "two_stage" and self.mode == "coarse":
            raise ValueError(
                "'training' is two_stage but 'mode' is coarse: there is no refine stage to train second; "
                "set training: joint or mode: coarse_refined"
            )
        return self

    def phases(self) -> tuple[Phase, ...]:
        """Two-stage training: the coarse net alone (a ``mode: coarse`` model), then the full model with that
        coarse net loaded and frozen while the refine net trains; joint training: one phase."""
        if self.training != "two_stage":
            return (Phase(WHOLE_MODEL),)
        coarse_only = self.model_copy(update={"mode": "coarse", "training": "joint"})
        return (Phase(COARSE_PHASE, coarse_only), Phase(REFINE_PHASE))

    def preset_part(self, phase: str) -> str:
        """The refine phase runs the refine preset; the coarse phase and joint training the coarse one."""
        return REFINE_PHASE if phase == REFINE_PHASE else COARSE_PHASE


class CoarseRefineConfig(CoarseFineConfig):
    """``adapters.coarse_refine``: the zero-shot map's softmax ``temperature`` and the coarse ``hidden`` width."""

    temperature: Annotated[float, Field(gt=0)]

    def batch_keys(self) -> tuple[str, ...]:
        return (clip_key("layer4"),) + (("rgb",) if self.mode == "coarse_refined" else ())

    def needs_head(self) -> bool:
        return True


class Coarse(nn.Module):
    """B x 1 x h x w map -> B x 1 x H/4 x W/4 depth (metres): Linear(h w, hidden) -> Linear(hidden, H/4 W/4)."""

    def __init__(self, *, in_size: tuple[int, int], hidden: int, out_size: tuple[int, int]):
        super().__init__()
        self.out_size = tuple(out_size)
        self.fc1 = nn.Linear(in_size[0] * in_size[1], hidden)
        self.fc2 = nn.Linear(hidden, out_size[0] * out_size[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x.float().flatten(1))).unflatten(1, (1, *self.out_size))  # no nonlinearity


class Refine(nn.Module):
    """RGB B x 3 x H x W in [0, 1] + coarse depth B x 1 x H/4 x W/4 -> depth B x 1 x H/4 x W/4 (metres)."""

    def __init__(self):
        super().__init__()
        self.image_conv = nn.Conv2d(3, REFINE_FEATURES, 9, stride=2, padding=4)
        self.pool = nn.MaxPool2d(2)
        self.fuse_conv = nn.Conv2d(REFINE_FEATURES + 1, REFINE_CHANNELS, 5, padding=2)
        self.out_conv = nn.Conv2d(REFINE_CHANNELS, 1, 5, padding=2)

    def forward(self, rgb: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.image_conv(normalise_imagenet(rgb.float()))))
        x = torch.cat([x, coarse.float()], dim=1)  # the coarse map last, as published
        return self.out_conv(torch.relu(self.fuse_conv(x)))


class CoarseFineAdapter(DepthAdapter):
    """A coarse network (batch -> B x 1 x H/4 x W/4) and, for ``coarse_refined``, the refine net. Depth at
    stride 4, metres, clamped to [0, 10] per pass as the authors' loop does in training and test (the coarse map
    the refine net reads is not). In the refine phase of two-stage training the coarse net is the coarse phase's,
    frozen."""

    output_stride = FINE_STRIDE

    def __init__(self, cfg: CoarseFineConfig, *, coarse: nn.Module):
        super().__init__(cfg)
        self.coarse = coarse
        self.refine = Refine() if cfg.mode == "coarse_refined" else None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        coarse = self.coarse(batch)
        depth = coarse if self.refine is None else self.refine(batch["rgb"], coarse)
        return depth.clamp(0.0, PUBLISHED_MAX_DEPTH)

    def begin_phase(self, phase: str, previous: DepthAdapter | None) -> None:
        if phase == REFINE_PHASE:
            self.coarse.load_state_dict(previous.coarse.state_dict())
            self.coarse.requires_grad_(False)


class ZeroShotCoarse(nn.Module):
    """layer4 features -> the soft zero-shot map -> :class:`Coarse`; the head's text and bins are buffers."""

    def __init__(self, *, text: torch.Tensor, bins: torch.Tensor, temperature: float, grid, hidden: int, out_size):
        super().__init__()
        self.register_buffer("text", text.detach().float().clone())
        self.register_buffer("bins", bins.detach().float().clone())
        self.temperature = temperature
        self.net = Coarse(in_size=grid, hidden=hidden, out_size=out_size)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(cosine_depth(batch[clip_key("layer4")], self.text, self.bins, temperature=self.temperature))


@register("coarse_refine", config=CoarseRefineConfig)
def build_coarse_refine(*, cfg: CoarseRefineConfig, context: AdapterContext) -> CoarseFineAdapter:
    """The coarse (and with ``mode: coarse_refined`` refine) adapter on CLIP's soft zero-shot map."""
    if context.head is None:
        raise ValueError("coarse_refine needs the DepthCLIP head (text embeddings) in its context")
    stride = context.layer_strides.get("layer4", 32)
    check_divisible(context.image_size, stride, "coarse_refine")
    h, w = context.image_size
    coarse = ZeroShotCoarse(
        text=context.head.text,
        bins=context.head.bins,
        temperature=cfg.temperature,
        grid=(h // stride, w // stride),
        hidden=cfg.hidden,
        out_size=(h // FINE_STRIDE, w // FINE_STRIDE),
    )
    return CoarseFineAdapter(cfg, coarse=coarse)
