"""The terms of the references' depth losses (DINOv2, DINOv3, Probe3D), written once from their definitions.

Sources (facts only): facebookresearch/dinov2 @ b8931f7bf91576930313be2c6d6af376033b35f0
``dinov2/eval/depth/models/losses/{sigloss,gradientloss}.py`` and ``decode_heads/decode_head.py`` (``losses``:
both terms get B x 1 x H x W tensors); facebookresearch/dinov3 @ 6876159a11b4df116f30f667f8c9888617df0751
``dinov3/eval/depth/loss.py``; mbanani/probe3d @ a1f14640076e38b8bc07b66d0fe2d01d15691e9d ``evals/utils/losses.py``
(``sig_loss``, ``gradient_loss``, ``DepthLoss``) and ``train_depth.py``.

All tensors here are B x 1 x H x W metres; a target pixel is valid when it is positive (and finite, which the
references' data always is). Every mean is over the valid pixels of the **whole batch** (not per image).
"""

from __future__ import annotations

import torch
from torch import nn

LOG_OFFSET = 1e-3  # metres added to both depths before the log (the references' eps "to avoid grad explode")
SCALE_WEIGHT = 0.15  # weight of mean(g)^2: Var(g) + 0.15 mean(g)^2 = mean(g^2) - 0.85 mean(g)^2 (lambda 0.85)
GRADIENT_SCALES = 4  # the full map, then every 2nd, 4th and 6th sample (``[:: 2 * i]`` for i = 1, 2, 3)
GRADIENT_AXES = {
    # DINOv2 and Probe3D index the 4-D tensors as if they were H x W maps: ``x[::2i, ::2i]``, ``x[0:-2, :] -
    # x[2:, :]`` and ``x[:, 0:-2] - x[:, 2:]`` act on the batch and channel axes. So the "vertical" term compares
    # image b with image b + 2 pixel by pixel and the "horizontal" one is empty (one channel): for a batch of 2
    # (DINOv2's) the term is exactly 0. DINOv3 indexes with ``...``: the image's own rows and columns.
    "as_written": (0, 1),
    "spatial": (2, 3),
}


def valid_target(depth: torch.Tensor) -> torch.Tensor:
    """B x 1 x H x W bool: positive, finite target pixels."""
    return torch.isfinite(depth) & (depth > 0)


def log_difference(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """g = ln(pred + 1e-3) - ln(target + 1e-3), same shape; invalid targets (0, NaN) give 0."""
    target = torch.where(valid_target(target), target, torch.ones_like(target))
    return torch.log(pred + LOG_OFFSET) - torch.log(target + LOG_OFFSET)


def sigloss(pred: torch.Tensor, target: torch.Tensor, *, unbiased: bool, warm_up: bool) -> torch.Tensor:
    """Scalar: sqrt(Var(g) + 0.15 mean(g)^2) over the batch's valid pixels (DINOv2 and DINOv3: ``torch.var``,
    i.e. ``unbiased``; Probe3D: mean(g^2) - 0.85 mean(g)^2, the population variance). ``warm_up``: DINOv2's and
    DINOv3's first iterations, sqrt(0.15 mean(g)^2) = 0.387 |mean(g)|. NaN when no pixel is valid."""
    g = log_difference(pred.float(), target.float())[valid_target(target)]
    if g.numel() == 0:
        return torch.full((), float("nan"), device=pred.device)
    scale_term = SCALE_WEIGHT * g.mean().pow(2)
    if warm_up:
        return scale_term.sqrt()
    variance = g.var(unbiased=unbiased) if g.numel() > 1 or not unbiased else torch.zeros((), device=g.device)
    return (variance + scale_term).sqrt()


def gradient_loss(pred: torch.Tensor, target: torch.Tensor, *, axes: str) -> torch.Tensor:
    """Scalar: the multi-scale log-depth gradient loss (MegaDepth's, as the references write it). At each of
    4 scales (``[:: 2i]`` along both ``axes`` for i = 0 (all), 1, 2, 3): sum over the pairs two samples apart
    along each axis, both valid, of |g_a - g_b| (g masked to 0 off the valid pixels), divided by the scale's
    number of valid pixels; the scales summed. ``axes``: ``as_written`` (the batch and channel axes, as DINOv2
    and Probe3D index B x 1 x H x W) or ``spatial`` (the rows and columns, as DINOv3)."""
    first, second = GRADIENT_AXES[axes]
    mask = valid_target(target)
    g = log_difference(pred.float(), target.float()) * mask
    total = pred.new_zeros((), dtype=torch.float32)
    for scale in range(GRADIENT_SCALES):
        step = max(2 * scale, 1)
        index = [slice(None)] * g.dim()
        index[first] = index[second] = slice(None, None, step)
        gs, ms = g[tuple(index)], mask[tuple(index)].float()
        pairs = 0.0
        for axis in (first, second):
            n = gs.shape[axis]
            if n < 3:  # no pair two samples apart
                continue
            a, b = gs.narrow(axis, 0, n - 2), gs.narrow(axis, 2, n - 2)
            both = ms.narrow(axis, 0, n - 2) * ms.narrow(axis, 2, n - 2)
            pairs = pairs + ((a - b).abs() * both).sum()
        total = total + pairs / ms.sum()
    return total


class ReferenceDepthLoss(nn.Module):
    """``sig_weight`` x :func:`sigloss` + ``gradient_weight`` x :func:`gradient_loss` against the batch's
    ``depth`` (B x 1 x H x W metres, 0 = invalid), with target pixels beyond ``max_depth`` made invalid first
    (Probe3D; None: none). The first ``warmup_iterations`` training calls use SigLoss's warm-up form (DINOv2,
    DINOv3); the buffer ``calls`` counts them and is part of the state dict. Trains on 0 (with a graph) where the
    batch has no valid pixel; ``validation_error`` is the full loss without the warm-up (NaN without a valid
    pixel) and counts nothing."""

    def __init__(
        self,
        *,
        sig_weight: float,
        unbiased: bool,
        warmup_iterations: int,
        gradient_weight: float,
        gradient_axes: str,
        max_depth: float | None,
    ):
        super().__init__()
        self.sig_weight, self.unbiased = float(sig_weight), unbiased
        self.warmup_iterations = int(warmup_iterations)
        self.gradient_weight, self.gradient_axes = float(gradient_weight), gradient_axes
        self.max_depth = max_depth
        self.fields = ("depth",)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def _target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        target = batch["depth"]
        if self.max_depth is None:
            return target
        return torch.where(target > self.max_depth, torch.zeros_like(target), target)

    def value(self, pred: torch.Tensor, target: torch.Tensor, *, warm_up: bool) -> torch.Tensor:
        """The loss of ``pred`` against ``target`` (both B x 1 x H x W metres)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        loss = self.sig_weight * sigloss(pred, target, unbiased=self.unbiased, warm_up=warm_up)
        if self.gradient_weight > 0:
            loss = loss + self.gradient_weight * gradient_loss(pred, target, axes=self.gradient_axes)
        return loss

    def forward(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        target = self._target(batch)
        warm_up = int(self.calls) < self.warmup_iterations
        self.calls += 1
        if not valid_target(target).any():
            return pred.sum() * 0.0
        return self.value(pred, target, warm_up=warm_up)

    def validation_error(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.value(pred, self._target(batch), warm_up=False)
