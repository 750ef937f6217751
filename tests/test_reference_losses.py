"""The references' depth losses (DINOv2, DINOv3, Probe3D) against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_params

from depthcore.losses.registry import build_loss

EPS = 1e-3  # the references' offset inside the logs


def loss(name: str, **settings):
    cfg = getattr(make_params().losses, name).model_copy(update=settings)
    return build_loss(name, cfg=cfg, smoothness=0.0)


def g(p: float, t: float) -> float:
    return math.log(p + EPS) - math.log(t + EPS)


# One image, 2 x 2; the 0 pixel is invalid. Valid pairs (pred, gt): (1, 2), (5, 2), (3, 3).
PRED = torch.tensor([[[[1.0, 5.0], [3.0, 7.0]]]])
TARGET = torch.tensor([[[[2.0, 2.0], [3.0, 0.0]]]])
G = [g(1, 2), g(5, 2), g(3, 3)]
MEAN = sum(G) / 3
UNBIASED_VAR = sum((x - MEAN) ** 2 for x in G) / 2
POPULATION_VAR = sum((x - MEAN) ** 2 for x in G) / 3


def test_dinov2_sigloss_warms_up_then_is_the_sqrt_of_unbiased_variance_plus_015_mean_squared():
    fn = loss("dinov2_sigloss", warmup_iterations=2)
    batch = {"depth": TARGET}
    # the as-written gradient term of a one-image batch has no pair two samples apart: 0
    assert fn(PRED, batch).item() == pytest.approx(math.sqrt(0.15 * MEAN**2), rel=1e-5)
    assert fn(PRED, batch).item() == pytest.approx(math.sqrt(0.15 * MEAN**2), rel=1e-5)
    assert fn(PRED, batch).item() == pytest.approx(math.sqrt(UNBIASED_VAR + 0.15 * MEAN**2), rel=1e-5)
    assert int(fn.state_dict()["calls"]) == 3  # the warm-up counter travels with the training state
    fn.validation_error(PRED, batch)
    assert int(fn.state_dict()["calls"]) == 3  # validation does not count


def test_the_gradient_term_as_written_compares_images_two_apart_and_spatial_compares_columns():
    # 3 images of one pixel each: as written, scale 1 pairs image 0 with image 2 (|g0 - g2| / 3 valid pixels);
    # the sub-sampled scales keep images [0, 2] or [0]: no pair. Spatial on the same values laid out as a row.
    pred, target = torch.tensor([1.0, 5.0, 2.0]), torch.tensor([2.0, 2.0, 4.0])
    gs = [g(p, t) for p, t in zip(pred.tolist(), target.tolist(), strict=True)]
    expected = 0.5 * abs(gs[0] - gs[2]) / 3
    sig = math.sqrt(sum((x - sum(gs) / 3) ** 2 for x in gs) / 2 + 0.15 * (sum(gs) / 3) ** 2)
    as_batch = {"depth": target.view(3, 1, 1, 1)}
    as_row = {"depth": target.view(1, 1, 1, 3)}
    written, spatial = loss("dinov2_sigloss", warmup_iterations=0), loss("dinov2_sigloss", gradient_axes="spatial")
    assert written.validation_error(pred.view(3, 1, 1, 1), as_batch).item() == pytest.approx(sig + expected, rel=1e-5)
    assert spatial.validation_error(pred.view(1, 1, 1, 3), as_row).item() == pytest.approx(sig + expected, rel=1e-5)
    assert written.validation_error(pred.view(1, 1, 1, 3), as_row).item() == pytest.approx(sig, rel=1e-5)
    two = {"depth": target[:2].view(2, 1, 1, 1)}  # DINOv2's batch of 2: the as-written term is exactly 0
    sig2 = math.sqrt(((gs[0] - gs[1]) ** 2) / 2 + 0.15 * ((gs[0] + gs[1]) / 2) ** 2)
    assert written.validation_error(pred[:2].view(2, 1, 1, 1), two).item() == pytest.approx(sig2, rel=1e-5)


def test_probe3d_depth_is_10_population_sigloss_with_targets_beyond_10_m_invalid():
    fn = loss("probe3d_depth")
    far = TARGET.clone()
    far[0, 0, 1, 1] = 12.0  # beyond max_depth: ignored like the 0 pixel
    expected = 10.0 * math.sqrt(POPULATION_VAR + 0.15 * MEAN**2)
    assert fn(PRED, {"depth": far}).item() == pytest.approx(expected, rel=1e-5)
    assert far[0, 0, 1, 1] == 12.0  # the batch is not edited in place (Probe3D's is)
    pred = PRED.clone().requires_grad_(True)
    fn(pred, {"depth": far}).backward()
    assert pred.grad[0, 0, 1, 1] == 0 and torch.count_nonzero(pred.grad[0, 0, 0]) == 2


def test_dinov3_sigloss_warms_up_for_100_calls_and_reads_only_depth():
    fn = loss("dinov3_sigloss")
    assert fn.fields == ("depth",) and fn.warmup_iterations == 100
    for _ in range(100):
        fn(PRED, {"depth": TARGET})
    assert fn(PRED, {"depth": TARGET}).item() == pytest.approx(math.sqrt(UNBIASED_VAR + 0.15 * MEAN**2), rel=1e-5)


def test_a_resumed_loss_goes_on_counting_its_warm_up():
    from depthcore.training.loop import state_of

    fn = loss("dinov2_sigloss", warmup_iterations=2)
    fn(PRED, {"depth": TARGET})
    fn(PRED, {"depth": TARGET})
    parts = [torch.nn.Linear(1, 1), torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)]
    saved = state_of(
        "k",
        1,
        parts[0],
        parts[1],
        torch.optim.lr_scheduler.LambdaLR(parts[1], lambda s: 1.0),
        torch.amp.GradScaler("cpu", enabled=False),
        [],
        {},
        fn,
    )
    resumed = loss("dinov2_sigloss", warmup_iterations=2)
    resumed.load_state_dict(saved["loss"])
    assert resumed(PRED, {"depth": TARGET}).item() == pytest.approx(math.sqrt(UNBIASED_VAR + 0.15 * MEAN**2), rel=1e-5)
