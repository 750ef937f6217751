"""Per-step learning-rate schedules (``train.schedule``), each a factor of the optimiser's lr at step s
(0 = before the first update) of T = epochs x steps per epoch, with W = ``warmup_epochs`` x steps per epoch
warm-up steps:

- ``constant``: 1.
- ``cosine``: 0.5 (1 + cos(pi s / T)), to 0 at T.
- ``step``: gamma ** ((s // steps per epoch) // step_epochs).
- ``warmup_cosine`` (Probe3D's ``cosine_decay_linear_warmup``, mbanani/probe3d @
  a1f14640076e38b8bc07b66d0fe2d01d15691e9d ``evals/utils/optim.py``, stepped per batch by ``train_depth.py``):
  m = ``final_lr_fraction`` (Probe3D: 0.01); s <= W: m + (1 - m) s / W; then m + (1 - m) cos(0.5 pi (s - W) / (T - W))
  (a quarter cosine period: 1 at the end of the warm-up, m at T).
- ``mmcv_cosine`` (DINOv2's released NYU configs: mmcv ``CosineAnnealing``, ``by_epoch=False``, ``warmup='linear'``,
  ``warmup_ratio=1e-3``, ``min_lr_ratio`` = m = ``final_lr_fraction``, 1e-8):
  c(s) = m + (1 - m) 0.5 (1 + cos(pi s / T)); s < W: c(s) (1 - (1 - s / W)(1 - 1e-3)); then c(s).
- ``onecycle`` (DINOv3's ``WarmupOneCycleLR`` with ``config-nyu.yaml``'s settings, facebookresearch/dinov3 @
  6876159a11b4df116f30f667f8c9888617df0751 ``dinov3/eval/depth/{schedulers.py,configs/config-nyu.yaml}``:
  ``final_div_factor`` 1000, ``div_factor`` 25 (its default), ``base_momentum`` 0.85, ``max_momentum`` 0.95,
  ``use_beta1``, cosine anneal): s < W: 1/1000 + 0.5 (1 + cos(pi s / T)) s / W; then
  a + (1 - a) 0.5 (1 + cos(pi (s + 1) / T)) with a = 1 / (25 x 1000). Adam's beta1 is 0 during the warm-up (the
  code sets it from a momentum left at 0 there), then 0.95 - 0.05 (1 + cos(pi (s - W) / (T - W))): 0.85 -> 0.95.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

MMCV_WARMUP_RATIO = 1e-3  # DINOv2's configs: the warm-up starts at 1e-3 x the cosine's lr
ONECYCLE_FINAL_DIV = 1000.0  # DINOv3: the warm-up starts at lr / 1000
ONECYCLE_DIV = 25.0  # DINOv3: initial_lr = lr / 25; the final lr is initial_lr / 1000
ONECYCLE_BETA1 = (0.85, 0.95)  # DINOv3: Adam's beta1 annealed from base to max momentum after the warm-up
WARMUP_SCHEDULES = ("warmup_cosine", "mmcv_cosine", "onecycle")  # use warmup_epochs
FINAL_FRACTION_SCHEDULES = ("warmup_cosine", "mmcv_cosine")  # use final_lr_fraction


def warmup_steps(cfg, steps_per_epoch: int) -> int:
    """The warm-up's steps: ``warmup_epochs`` x steps per epoch, rounded, at least 1 and at most the run's steps
    (a tiny run's rounding); 0 for a schedule without one. ValueError if ``warmup_epochs`` exceeds ``epochs``."""
    if cfg.schedule not in WARMUP_SCHEDULES:
        return 0
    if cfg.warmup_epochs > cfg.epochs:
        raise ValueError(
            f"schedule {cfg.schedule}: warmup_epochs {cfg.warmup_epochs} exceeds the run's {cfg.epochs} epochs: lower "
            "warmup_epochs or raise epochs"
        )
    return min(max(round(cfg.warmup_epochs * steps_per_epoch), 1), cfg.epochs * steps_per_epoch)


def _half_cosine(fraction: float) -> float:
    """0.5 (1 + cos(pi x)): 1 at x = 0, 0 at x = 1."""
    return 0.5 * (1.0 + math.cos(math.pi * fraction))


def lr_factor(cfg, steps_per_epoch: int) -> Callable[[int], float]:
    """The factor of ``cfg.lr`` at each step (see the module docstring); ``cfg``: the train settings in effect."""
    total = cfg.epochs * steps_per_epoch
    warmup = warmup_steps(cfg, steps_per_epoch)
    final = cfg.final_lr_fraction if cfg.schedule in FINAL_FRACTION_SCHEDULES else 0.0

    def constant(step: int) -> float:
        return 1.0

    def cosine(step: int) -> float:
        return _half_cosine(min(step, total) / total)

    def step_decay(step: int) -> float:
        return cfg.gamma ** ((step // steps_per_epoch) // cfg.step_epochs)

    def warmup_cosine(step: int) -> float:
        step = min(step, total)
        if step <= warmup:
            return final + (1.0 - final) * step / warmup
        return final + (1.0 - final) * math.cos(0.5 * math.pi * (step - warmup) / (total - warmup))  # step > warmup

    def mmcv_cosine(step: int) -> float:
        step = min(step, total)
        regular = final + (1.0 - final) * _half_cosine(step / total)
        if step < warmup:
            return regular * (1.0 - (1.0 - step / warmup) * (1.0 - MMCV_WARMUP_RATIO))
        return regular

    def onecycle(step: int) -> float:
        step = min(step, total)
        if step < warmup:
            return 1.0 / ONECYCLE_FINAL_DIV + _half_cosine(step / total) * step / warmup
        lowest = 1.0 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
        return lowest + (1.0 - lowest) * _half_cosine(min(step + 1, total) / total)

    factors = {
        "constant": constant,
        "cosine": cosine,
        "step": step_decay,
        "warmup_cosine": warmup_cosine,
        "mmcv_cosine": mmcv_cosine,
        "onecycle": onecycle,
    }
    return factors[cfg.schedule]


def onecycle_beta1(step: int, *, warmup: int, total: int) -> float:
    """DINOv3's Adam beta1 at ``step``: 0 during the warm-up, then annealed (cosine) from 0.85 to 0.95."""
    if step < warmup:
        return 0.0
    low, high = ONECYCLE_BETA1
    return high + (low - high) / 2.0 * (math.cos(math.pi * (step - warmup) / max(total - warmup, 1)) + 1.0)


class Schedule(torch.optim.lr_scheduler.LambdaLR):
    """A per-step LambdaLR of :func:`lr_factor`; with ``onecycle`` it also sets Adam's beta1 of every param group
    at each step (:func:`onecycle_beta1`; the betas are part of the optimiser's state dict)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg, steps_per_epoch: int):
        self.cycles_beta1 = cfg.schedule == "onecycle"
        self.total = cfg.epochs * steps_per_epoch
        self.warmup = warmup_steps(cfg, steps_per_epoch)
        if self.cycles_beta1 and not all("betas" in group for group in optimizer.param_groups):
            raise ValueError("schedule onecycle cycles Adam's beta1: use optimizer adam or adamw")
        super().__init__(optimizer, lr_factor(cfg, steps_per_epoch))

    def step(self, epoch=None) -> None:
        super().step(epoch)
        if self.cycles_beta1:
            beta1 = onecycle_beta1(min(self.last_epoch, self.total), warmup=self.warmup, total=self.total)
            for group in self.optimizer.param_groups:
                group["betas"] = (beta1, group["betas"][1])
