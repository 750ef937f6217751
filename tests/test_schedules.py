"""The references' learning-rate schedules: the lr (and DINOv3's beta1) at chosen steps, computed by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from depthcore.training.loop import make_schedule


def lrs(schedule: str, *, epochs: int, steps_per_epoch: int, warmup_epochs: float, final: float = 0.0):
    """(lr, beta1) before each of the run's steps and after the last, with lr 1 and AdamW."""
    cfg = SimpleNamespace(
        schedule=schedule, epochs=epochs, warmup_epochs=warmup_epochs, final_lr_fraction=final, gamma=None
    )
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_schedule(optimizer, cfg, steps_per_epoch)
    out = []
    for _ in range(epochs * steps_per_epoch + 1):
        group = optimizer.param_groups[0]
        out.append((group["lr"], group["betas"][0]))
        optimizer.step()
        sched.step()
    return out


def test_probe3d_warmup_cosine_from_and_to_one_percent():
    # 7 steps, 1 warm-up step: s = 0: 0.01; s = 1: 1; s = 4: 0.01 + 0.99 cos(pi / 4); s = 7: 0.01
    lr = [x for x, _ in lrs("warmup_cosine", epochs=7, steps_per_epoch=1, warmup_epochs=1.0, final=0.01)]
    assert lr[0] == pytest.approx(0.01)
    assert lr[1] == pytest.approx(1.0)
    assert lr[4] == pytest.approx(0.01 + 0.99 * math.sqrt(0.5))
    assert lr[7] == pytest.approx(0.01)
    # 1.5 epochs of 2 steps = 3 warm-up steps: s = 1 is a third of the way from 0.01 to 1
    lr = [x for x, _ in lrs("warmup_cosine", epochs=10, steps_per_epoch=2, warmup_epochs=1.5, final=0.01)]
    assert lr[1] == pytest.approx(0.01 + 0.99 / 3) and lr[3] == pytest.approx(1.0)


def test_dinov3_onecycle_lr_and_beta1():
    # T = 8 steps, W = 2: s = 0: 1/1000; s = 1: 1/1000 + (1 + cos(pi/8))/2 * 1/2; s = 2: a + (1 - a)(1 + cos(3 pi/8))/2
    # with a = 1/25000; beta1 0 in the warm-up, then 0.85 at s = W, 0.90 halfway (s = 5), 0.95 at the end
    out = lrs("onecycle", epochs=4, steps_per_epoch=2, warmup_epochs=1.0)
    a = 1 / 25000
    assert out[0][0] == pytest.approx(0.001)
    assert out[1][0] == pytest.approx(0.001 + (1 + math.cos(math.pi / 8)) / 4)
    assert out[2][0] == pytest.approx(a + (1 - a) * (1 + math.cos(3 * math.pi / 8)) / 2)
    assert out[8][0] == pytest.approx(a)
    assert [b for _, b in out[:2]] == [0.0, 0.0]
    assert out[2][1] == pytest.approx(0.85) and out[5][1] == pytest.approx(0.90) and out[8][1] == pytest.approx(0.95)


def test_dinov2_mmcv_cosine_with_linear_warmup_from_a_thousandth():
    # T = 4, W = 2: s = 0: 1e-3 x 1; s = 1: cos part (1 + cos(pi/4))/2 x (1 - 0.5 x 0.999); s = 2: 0.5 (no warm-up)
    lr = [x for x, _ in lrs("mmcv_cosine", epochs=4, steps_per_epoch=1, warmup_epochs=2.0, final=0.0)]
    assert lr[0] == pytest.approx(1e-3)
    assert lr[1] == pytest.approx((1 + math.sqrt(0.5)) / 2 * (1 - 0.5 * 0.999))
    assert lr[2] == pytest.approx(0.5) and lr[4] == pytest.approx(0.0, abs=1e-12)


def test_a_warmup_longer_than_the_run_is_refused_and_a_tiny_one_takes_one_step():
    with pytest.raises(ValueError, match="warmup_epochs 3.0 exceeds the run's 2 epochs"):
        lrs("warmup_cosine", epochs=2, steps_per_epoch=1, warmup_epochs=3.0, final=0.01)
    lr = [x for x, _ in lrs("warmup_cosine", epochs=2, steps_per_epoch=1, warmup_epochs=0.1, final=0.01)]
    assert lr == pytest.approx([0.01, 1.0, 0.01])
