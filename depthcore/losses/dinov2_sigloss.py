"""``loss: dinov2_sigloss``: DINOv2's NYU depth loss, SigLoss (with its warm-up) + ``gradient_weight`` x GradientLoss.

As the released NYU configs set it (docs/probes.md): ``SigLoss(valid_mask=True, loss_weight=1.0, warm_up=True)``
and ``GradientLoss(valid_mask=True, loss_weight=0.5)``: sqrt(Var(g) + 0.15 mean(g)^2) with g = ln(pred + 1e-3) -
ln(gt + 1e-3) over the batch's valid pixels (``torch.var``: unbiased), for the first ``warmup_iterations``
training calls sqrt(0.15 mean(g)^2) alone; plus the multi-scale log gradient loss, which DINOv2 indexes along the
batch and channel axes of its B x 1 x H x W tensors (``gradient_axes: as_written``, exactly 0 at DINOv2's batch of
2) or, as intended, along rows and columns (``spatial``). Terms: :mod:`depthcore.losses._reference_terms`.

The warm-up counts the loss's training calls in a buffer (``calls``), saved with the training state so that a
resumed run goes on counting; validation does not count.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from depthcore.losses._reference_terms import ReferenceDepthLoss
from depthcore.losses.base import LossConfig
from depthcore.losses.registry import register


class Dinov2SiglossConfig(LossConfig):
    """``losses.dinov2_sigloss``: ``gradient_weight`` (DINOv2: 0.5), ``gradient_axes`` (as_written: DINOv2's
    indexing; spatial: rows and columns), ``warmup_iterations`` (DINOv2: 100; 0: none)."""

    gradient_weight: Annotated[float, Field(ge=0)]
    gradient_axes: Literal["as_written", "spatial"]
    warmup_iterations: Annotated[int, Field(ge=0)]

    def batch_keys(self, *, smoothness: float) -> tuple[str, ...]:
        return ("depth",)


@register("dinov2_sigloss", config=Dinov2SiglossConfig)
def build_dinov2_sigloss(*, cfg: Dinov2SiglossConfig, smoothness: float) -> ReferenceDepthLoss:
    return ReferenceDepthLoss(
        sig_weight=1.0,
        unbiased=True,
        warmup_iterations=cfg.warmup_iterations,
        gradient_weight=cfg.gradient_weight,
        gradient_axes=cfg.gradient_axes,
        max_depth=None,
    )
