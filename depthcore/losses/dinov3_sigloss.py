"""``loss: dinov3_sigloss``: DINOv3's NYU depth loss (``config-nyu.yaml``: ``losses: {SIGLOSS: 1.0}``).

facebookresearch/dinov3 @ 6876159a11b4df116f30f667f8c9888617df0751 ``dinov3/eval/depth/loss.py``: SigLoss built with
``warm_up=True, warm_iter=100``: sqrt(0.15 mean(g)^2) for the first 100 calls, then sqrt(Var(g) + 0.15 mean(g)^2)
(``torch.var``, unbiased), g = ln(pred + 1e-3) - ln(gt + 1e-3) over the batch's valid pixels. Its optional
GRADIENT_LOG_LOSS (weight 0 in the NYU config) indexes rows and columns (``spatial``). The warm-up counter is a
buffer saved with the training state (:class:`depthcore.losses._reference_terms.ReferenceDepthLoss`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from depthcore.losses._reference_terms import ReferenceDepthLoss
from depthcore.losses.base import LossConfig
from depthcore.losses.registry import register


class Dinov3SiglossConfig(LossConfig):
    """``losses.dinov3_sigloss``: ``gradient_weight`` of the spatial log-gradient loss (DINOv3's NYU config: 0),
    ``warmup_iterations`` of SigLoss (DINOv3: 100; 0: none)."""

    gradient_weight: Annotated[float, Field(ge=0)]
    warmup_iterations: Annotated[int, Field(ge=0)]

    def batch_keys(self, *, smoothness: float) -> tuple[str, ...]:
        return ("depth",)


@register("dinov3_sigloss", config=Dinov3SiglossConfig)
def build_dinov3_sigloss(*, cfg: Dinov3SiglossConfig, smoothness: float) -> ReferenceDepthLoss:
    return ReferenceDepthLoss(
        sig_weight=1.0,
        unbiased=True,
        warmup_iterations=cfg.warmup_iterations,
        gradient_weight=cfg.gradient_weight,
        gradient_axes="spatial",
        max_depth=None,
    )
