"""Photometric loss: inverse warping by hand, SSIM against scikit-image, smoothness by hand, and the
loss's minimum at the true depth on a rendered synthetic pair."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from depthcore.data.synthetic import intrinsics_for, render_sample
from depthcore.geometry.camera import mirror_intrinsics, mirror_pose
from depthcore.geometry.warp import inverse_warp
from depthcore.losses.base import edge_aware_smoothness
from depthcore.losses.ssl import SSIM_C1, PhotometricLoss, photometric_error, ssim_map

HEIGHT, WIDTH = 48, 64
FOCAL = 40.0  # pixels, for the hand-computed warps
ALPHA = 0.85


def k_matrix(fx, fy, cx, cy, batch=1) -> torch.Tensor:
    k = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
    return k.expand(batch, 3, 3).clone()


def translation(tx=0.0, ty=0.0, tz=0.0, batch=1) -> torch.Tensor:
    pose = torch.eye(4).repeat(batch, 1, 1)
    pose[:, :3, 3] = torch.tensor([tx, ty, tz])
    return pose


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 1 x 3 x H x W float32 in [0, 1]."""
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


SMALL_K = k_matrix(FOCAL, FOCAL, (WIDTH - 1) / 2, (HEIGHT - 1) / 2)


@pytest.fixture(scope="module")
def room():
    """A rendered synthetic pair at 480 x 640 as a batch of one (metres, [0, 1] images)."""
    s = render_sample(0, 0, height=480, width=640, views_per_room=2)
    return {
        "rgb": image_tensor(s.rgb),
        "pair_rgb": image_tensor(s.pair_rgb),
        "pair_pose": torch.from_numpy(s.pair_pose)[None].float(),
        "intrinsics": k_matrix(*intrinsics_for(480, 640)),
        "pair_valid": torch.ones(1, 480, 640, dtype=torch.bool),
        "depth": torch.from_numpy(s.depth)[None, None],
    }


# ------------------------------------------------------------------------------- inverse warping
def test_identity_pose_reproduces_source():
    gen = torch.Generator().manual_seed(0)
    source = torch.rand(2, 3, HEIGHT, WIDTH, generator=gen)
    depth = 1.0 + 4.0 * torch.rand(2, 1, HEIGHT, WIDTH, generator=gen)
    warped, valid = inverse_warp(source, depth, translation(batch=2), SMALL_K.expand(2, 3, 3))
    assert valid.all()
    torch.testing.assert_close(warped, source, atol=1e-5, rtol=0)


def test_sideways_translation_shifts_a_plane_by_hand():
    """Plane at 2 m, t_x = 0.1 m, f = 40 px: every pixel samples the source 40 * 0.1 / 2 = 2 px to the right."""
    source = torch.rand(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))
    depth = torch.full((1, 1, HEIGHT, WIDTH), 2.0)
    warped, valid = inverse_warp(source, depth, translation(tx=0.1), SMALL_K)
    torch.testing.assert_close(warped[..., :-2], source[..., 2:], atol=1e-5, rtol=0)
    assert valid[..., :-2].all() and not valid[..., -2:].any()  # columns 62, 63 land on 64, 65: outside


def test_fractional_shift_is_bilinear_by_hand():
    """t_y = 0.0625 m at 2 m: 1.25 px down, so warped row v = 0.75 * row v+1 + 0.25 * row v+2."""
    source = torch.rand(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(2))
    depth = torch.full((1, 1, HEIGHT, WIDTH), 2.0)
    warped, valid = inverse_warp(source, depth, translation(ty=0.0625), SMALL_K)
    expected = 0.75 * source[..., 1:-1, :] + 0.25 * source[..., 2:, :]
    torch.testing.assert_close(warped[..., :-2, :], expected, atol=1e-5, rtol=0)
    assert valid[..., :-2, :].all() and not valid[..., -2:, :].any()


def test_backward_translation_zooms_out_by_hand():
    """Plane at 2 m seen from 2 m further back: u_s - cx = (u - cx) / 2. A linear ramp samples exactly."""
    cx = (WIDTH - 1) / 2
    u = torch.arange(WIDTH, dtype=torch.float32)
    source = (u / WIDTH).expand(1, 3, HEIGHT, WIDTH)
    depth = torch.full((1, 1, HEIGHT, WIDTH), 2.0)
    warped, valid = inverse_warp(source, depth, translation(tz=2.0), SMALL_K)
    expected = (cx + (u - cx) / 2) / WIDTH
    assert valid.all()
    torch.testing.assert_close(warped[0, 0, 5], expected, atol=1e-5, rtol=0)


def test_points_behind_the_source_camera_are_invalid_and_finite():
    depth = torch.full((1, 1, HEIGHT, WIDTH), 2.0, requires_grad=True)
    source = torch.rand(1, 3, HEIGHT, WIDTH)
    warped, valid = inverse_warp(source, depth, translation(tz=-3.0), SMALL_K)  # z_s = -1 m
    assert not valid.any() and torch.isfinite(warped).all()
    warped.sum().backward()
    assert torch.isfinite(depth.grad).all()


def test_invalid_source_pixels_neither_count_nor_leak():
    """Half-pixel shift: each target pixel blends two source columns; one invalid column poisons two targets."""
    source = torch.rand(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3))
    source_valid = torch.ones(1, 1, HEIGHT, WIDTH, dtype=torch.bool)
    source_valid[..., 30] = False
    depth = torch.full((1, 1, HEIGHT, WIDTH), 2.0)
    pose = translation(tx=0.025)  # 40 * 0.025 / 2 = 0.5 px
    warped, valid = inverse_warp(source, depth, pose, SMALL_K, source_valid)
    invalid_columns = torch.nonzero(~valid[0, 0].all(dim=0)).ravel().tolist()
    assert invalid_columns == [29, 30, WIDTH - 1]  # u + 0.5 touches column 30 from 29 and 30; 63.5 is outside
    corrupted = source.clone()
    corrupted[..., 30] = float("nan")
    warped_corrupted, _ = inverse_warp(corrupted, depth, pose, SMALL_K, source_valid)
    torch.testing.assert_close(warped_corrupted, warped)


# ------------------------------------------------------------------------------ photometric error
def test_ssim_matches_scikit_image_on_rendered_views(room):
    a = room["rgb"][0].permute(1, 2, 0).double().numpy()
    b = room["pair_rgb"][0].permute(1, 2, 0).double().numpy()
    _, reference = structural_similarity(
        a, b, win_size=3, channel_axis=-1, data_range=1.0, use_sample_covariance=False, full=True
    )
    assert reference.min() < 0.0 and reference.mean() < 0.95  # a real, varied comparison
    for dtype, tolerance in ((torch.float64, 1e-9), (torch.float32, 5e-4)):
        ours = ssim_map(room["rgb"].to(dtype), room["pair_rgb"].to(dtype))[0].permute(1, 2, 0).double().numpy()
        # scikit-image pads symmetrically, torch by mirroring: compare away from the 1-pixel border
        assert np.abs(ours - reference)[1:-1, 1:-1].max() < tolerance


def test_photometric_error_by_hand_on_flat_images():
    a, b = 0.2, 0.6
    ssim = (2 * a * b + SSIM_C1) / (a * a + b * b + SSIM_C1)  # flat windows: the structure term is 1
    expected = ALPHA * (1 - ssim) / 2 + (1 - ALPHA) * abs(a - b)
    # float32 local variances E[x^2] - E[x]^2 cancel to ~1e-8, which SSIM_C2 = 9e-4 turns into ~3e-5
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-4)):
        target = torch.full((1, 3, 8, 8), a, dtype=dtype)
        reconstructed = torch.full((1, 3, 8, 8), b, dtype=dtype)
        error = photometric_error(target, reconstructed, alpha=ALPHA)
        assert error.shape == (1, 1, 8, 8)
        assert (error.double() - expected).abs().max() < tolerance


def test_photometric_error_penalises_dissimilarity():
    """Unlike the authors' double (1 - .)/2, identical images score 0 and unrelated ones more."""
    gen = torch.Generator().manual_seed(4)
    x, y = torch.rand(1, 3, 16, 16, generator=gen), torch.rand(1, 3, 16, 16, generator=gen)
    ssim_only = photometric_error(x, x, alpha=1.0)
    assert ssim_only.abs().max() < 1e-6
    assert photometric_error(x, y, alpha=1.0).mean() > 0.3


# --------------------------------------------------------------------------------------- smoothness
def test_smoothness_by_hand():
    depth = torch.tensor([[[[1.0, 2.0, 3.0], [1.0, 2.0, 6.0]]]])  # mean 2.5
    image = torch.zeros(1, 3, 2, 3)
    image[0, 0, 0, 2] = 1.0
    image[0, 2, 0, 2] = 0.5  # channel-mean jump of 0.5 into pixel (0, 2), from its left and from below
    e = math.exp(-0.5)
    # D* = [[.4, .8, 1.2], [.4, .8, 2.4]]: x-differences .4 .4 / .4 1.6, y-differences 0 0 1.2
    expected = (0.4 + 0.4 * e + 0.4 + 1.6) / 4 + (0 + 0 + 1.2 * e) / 3
    assert edge_aware_smoothness(depth, image).item() == pytest.approx(expected, rel=1e-6)
    assert edge_aware_smoothness(5.0 * depth, image).item() == pytest.approx(expected, rel=1e-6)  # scale-free


def test_smoothness_is_lower_where_the_image_has_an_edge():
    depth = torch.ones(1, 1, 8, 8)
    depth[..., 4:] = 3.0
    flat = torch.full((1, 3, 8, 8), 0.5)
    edge = flat.clone()
    edge[..., 4:] = 1.0
    assert edge_aware_smoothness(depth, edge) < 0.7 * edge_aware_smoothness(depth, flat)
    assert edge_aware_smoothness(torch.ones(1, 1, 8, 8), edge) == 0


# ------------------------------------------------------------------------------ on a rendered pair
def scaled_error(batch, scale: float) -> float:
    return PhotometricLoss(alpha=ALPHA, smoothness=0.0).photometric_term(batch["depth"] * scale, batch).item()


def test_loss_is_minimal_near_the_true_depth(room):
    errors = {scale: scaled_error(room, scale) for scale in (0.7, 0.85, 1.0, 1.15, 1.3)}
    assert min(errors, key=errors.get) == 1.0
    assert errors[0.7] > 3.0 * errors[1.0] and errors[1.3] > 3.0 * errors[1.0]  # measured 5.5x and 4.1x
    assert errors[1.0] < 0.01


def test_mirrored_pair_stays_consistent(room):
    width = room["rgb"].shape[-1]
    mirrored = dict(room)
    for key in ("rgb", "pair_rgb", "depth", "pair_valid"):
        mirrored[key] = room[key].flip(-1)
    mirrored["pair_pose"] = mirror_pose(room["pair_pose"])
    mirrored["intrinsics"] = mirror_intrinsics(room["intrinsics"], width)
    plain, flipped = scaled_error(room, 1.0), scaled_error(mirrored, 1.0)
    assert flipped == pytest.approx(plain, rel=0.05)
    unmirrored_pose = dict(mirrored, pair_pose=room["pair_pose"])
    assert scaled_error(unmirrored_pose, 1.0) > 2.0 * plain  # the pose mirroring matters


def test_gradient_pulls_the_depth_scale_towards_the_truth(room):
    loss_fn = PhotometricLoss(alpha=ALPHA, smoothness=1e-3)
    for start, sign in ((0.7, -1.0), (1.3, 1.0)):
        scale = torch.tensor(start, requires_grad=True)
        loss_fn(room["depth"] * scale, room).backward()
        assert sign * scale.grad.item() > 0  # descending moves the scale towards 1


# ------------------------------------------------------------------------------------- the module
def textured_batch(shift_m=0.05):
    """A 48 x 64 textured plane at 2 m and its source view shifted by f * shift_m / 2 pixels."""
    gen = torch.Generator().manual_seed(5)
    rgb = torch.rand(1, 3, HEIGHT, WIDTH, generator=gen)
    pose = translation(tx=shift_m)
    pixels = FOCAL * shift_m / 2.0
    pair_rgb = torch.roll(rgb, shifts=int(pixels), dims=-1)
    return {
        "rgb": rgb,
        "pair_rgb": pair_rgb,
        "pair_pose": pose,
        "intrinsics": SMALL_K.clone(),
        "pair_valid": torch.ones(1, HEIGHT, WIDTH, dtype=torch.bool),
    }


def test_no_valid_pixel_gives_zero_with_graph():
    batch = textured_batch()
    batch["pair_valid"] = torch.zeros_like(batch["pair_valid"])
    pred = torch.full((1, 1, HEIGHT, WIDTH), 2.0, requires_grad=True)
    loss = PhotometricLoss(alpha=ALPHA, smoothness=0.1)(pred, batch)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.count_nonzero(pred.grad) == 0


def test_gradient_flows_to_depth():
    batch = textured_batch()
    pred = torch.full((1, 1, HEIGHT, WIDTH), 2.5, requires_grad=True)
    PhotometricLoss(alpha=ALPHA, smoothness=0.0)(pred, batch).backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad != 0).float().mean() > 0.5


def test_masked_pixels_do_not_contribute():
    batch = textured_batch()
    pred = torch.full((1, 1, HEIGHT, WIDTH), 2.0)  # the true depth: the view is reconstructed exactly
    loss_fn = PhotometricLoss(alpha=ALPHA, smoothness=0.0)
    corrupted = dict(batch, pair_rgb=batch["pair_rgb"].clone())
    corrupted["pair_rgb"][..., 10:30, 20:40] = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(7))
    assert loss_fn(pred, batch).item() < 1e-5
    assert loss_fn(pred, corrupted).item() > 0.02  # unmasked, the corruption counts
    masked = dict(corrupted, pair_valid=batch["pair_valid"].clone())
    masked["pair_valid"][:, 10:30, 20:40] = False
    assert loss_fn(pred, masked).item() < 1e-5  # masked, it does not


def test_smoothness_weight_adds_the_smoothness_term():
    batch = textured_batch()
    pred = 2.0 + torch.rand(1, 1, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(6))
    without = PhotometricLoss(alpha=ALPHA, smoothness=0.0)(pred, batch)
    with_smooth = PhotometricLoss(alpha=ALPHA, smoothness=0.5)(pred, batch)
    expected = without + 0.5 * edge_aware_smoothness(pred, batch["rgb"])
    torch.testing.assert_close(with_smooth, expected)
    assert PhotometricLoss(alpha=ALPHA, smoothness=0.5).photometric_term(pred, batch).item() == pytest.approx(
        without.item()
    )


def test_declares_its_fields_and_checks_shapes():
    assert PhotometricLoss.fields == ("rgb", "pair_rgb", "pair_pose", "intrinsics", "pair_valid")
    with pytest.raises(ValueError, match="must match"):
        PhotometricLoss(alpha=ALPHA, smoothness=0.0)(torch.ones(1, 1, 24, 32), textured_batch())
