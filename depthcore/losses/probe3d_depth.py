"""``loss: probe3d_depth``: Probe3D's ``DepthLoss``: 10 x SigLoss + 0.5 x the multi-scale gradient loss.

mbanani/probe3d @ a1f14640076e38b8bc07b66d0fe2d01d15691e9d ``evals/utils/losses.py``: target pixels beyond
``max_depth`` (10 m) set to 0 (invalid); ``sig_loss``: sqrt(mean(g^2) - 0.85 mean(g)^2) (the population variance,
no warm-up), g = ln(pred + 1e-3) - ln(gt + 1e-3) over the batch's valid pixels; ``gradient_loss``: DINOv2's,
indexed like it on B x 1 x H x W tensors (``gradient_axes: as_written``: images b and b + 2 of the batch compared
pixel by pixel; ``spatial``: rows and columns). Terms: :mod:`depthcore.losses._reference_terms`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from depthcore.losses._reference_terms import ReferenceDepthLoss
from depthcore.losses.base import LossConfig
from depthcore.losses.registry import register


class Probe3dDepthConfig(LossConfig):
    """``losses.probe3d_depth``: ``sig_weight`` (Probe3D: 10), ``gradient_weight`` (0.5), ``gradient_axes``
    (as_written: Probe3D's indexing; spatial), ``max_depth`` (metres; targets beyond it are invalid; 10)."""

    sig_weight: Annotated[float, Field(gt=0)]
    gradient_weight: Annotated[float, Field(ge=0)]
    gradient_axes: Literal["as_written", "spatial"]
    max_depth: Annotated[float, Field(gt=0)]

    def batch_keys(self, *, smoothness: float) -> tuple[str, ...]:
        return ("depth",)


@register("probe3d_depth", config=Probe3dDepthConfig)
def build_probe3d_depth(*, cfg: Probe3dDepthConfig, smoothness: float) -> ReferenceDepthLoss:
    return ReferenceDepthLoss(
        sig_weight=cfg.sig_weight,
        unbiased=False,
        warmup_iterations=0,
        gradient_weight=cfg.gradient_weight,
        gradient_axes=cfg.gradient_axes,
        max_depth=cfg.max_depth,
    )
