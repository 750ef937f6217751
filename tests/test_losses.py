"""Masked losses against hand-computed values; invalid pixels carry no value and no gradient."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_params

from depthcore.errors import DepthcoreError
from depthcore.losses.base import edge_aware_smoothness
from depthcore.losses.registry import LOSSES, build_loss

SUPERVISED = ("l1", "l2", "silog")


def loss(name: str, smoothness: float = 0.0):
    """The loss ``name`` with the repository's settings (losses.<name>) and the given smoothness weight."""
    return build_loss(name, cfg=getattr(make_params().losses, name), smoothness=smoothness)


# One image, 2 x 2: the target's 0 and NaN pixels are invalid; the valid errors are 1 m and 3 m, so
# L1 = (1 + 3) / 2 = 2 and L2 = (1 + 9) / 2 = 5 tell the two apart.
PRED = torch.tensor([[[[1.0, 5.0], [4.0, 100.0]]]])
TARGET = torch.tensor([[[[2.0, 2.0], [0.0, float("nan")]]]])


def run(name, pred=PRED, target=TARGET):
    pred = pred.clone().requires_grad_(True)
    value = loss(name)(pred, {"depth": target})
    value.backward()
    return value.item(), pred.grad


def test_l1_by_hand():
    value, grad = run("l1")
    assert value == pytest.approx((1.0 + 3.0) / 2)
    torch.testing.assert_close(grad[0, 0, 0], torch.tensor([-0.5, 0.5]))  # sign(p - t) / n
    assert grad[0, 0, 1, 0] == 0 and grad[0, 0, 1, 1] == 0  # invalid pixels: no gradient


def test_l2_by_hand():
    value, grad = run("l2")
    assert value == pytest.approx((1.0 + 9.0) / 2)
    torch.testing.assert_close(grad[0, 0, 0], torch.tensor([-1.0, 3.0]))  # 2 (p - t) / n
    assert torch.count_nonzero(grad[0, 0, 1]) == 0


def test_silog_by_hand():
    value, _ = run("silog")
    d = [math.log(1.0) - math.log(2.0), math.log(5.0) - math.log(2.0)]
    expected = sum(x * x for x in d) / 2 - 0.5 * (sum(d) / 2) ** 2
    assert value == pytest.approx(expected)
    # scale invariance (lambda = 1 would be exact; Eigen's 0.5 halves the scale penalty)
    v2, _ = run("silog", pred=2.0 * TARGET.nan_to_num(1.0))
    assert v2 == pytest.approx(0.5 * math.log(2.0) ** 2)


def test_no_valid_pixel_trains_on_zero_with_graph_and_validates_undefined():
    for name in SUPERVISED:
        value, grad = run(name, target=torch.zeros(1, 1, 2, 2))
        assert value == 0.0 and torch.count_nonzero(grad) == 0
        undefined = loss(name).validation_error(PRED, {"depth": torch.zeros(1, 1, 2, 2)})
        assert math.isnan(undefined.item()), name  # never the best possible validation score


def test_non_finite_prediction_stays_non_finite():
    """A NaN prediction on valid pixels must reach the training loop (which stops), not become 0."""
    for name in SUPERVISED:
        pred = torch.full_like(PRED, float("nan"))
        assert math.isnan(loss(name)(pred, {"depth": TARGET}).item()), name


def test_registry_lists_losses_and_refuses_unknown_ones():
    assert LOSSES.names() == ["dinov2_sigloss", "dinov3_sigloss", "l1", "l2", "probe3d_depth", "silog", "ssl"]
    with pytest.raises(
        DepthcoreError,
        match=r"params 'loss': unknown loss 'huber'; valid losses are \['dinov2_sigloss', 'dinov3_sigloss', 'l1', ",
    ):
        LOSSES.get("huber")
    config = make_params().losses
    assert not config.l1.needs_pairs and config.ssl.needs_pairs  # what the pairs stage is needed for
    assert config.l2.batch_keys(smoothness=0.0) == ("depth",) and "pair_pose" in config.ssl.batch_keys(smoothness=0)


def test_smoothness_is_added_with_its_weight_and_reads_the_image():
    pred = torch.rand(1, 1, 4, 5) + 1.0
    rgb = torch.rand(1, 3, 4, 5)
    batch = {"depth": pred + 0.5, "rgb": rgb}
    plain, smooth = loss("l1"), loss("l1", smoothness=0.25)
    assert plain.fields == ("depth",) and smooth.fields == ("depth", "rgb")
    expected = 0.5 + 0.25 * edge_aware_smoothness(pred, rgb)
    torch.testing.assert_close(smooth(pred, batch), expected)
