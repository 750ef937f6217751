"""View pairs for self-supervision: homography decomposition against known motions, and every pair
generator checked for photometric consistency with its own pose through the (independent) torch warp."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthcore.data.pairs import (
    Pair,
    dataset_pair,
    decompose_homography,
    homography_pair,
    random_rigid_motion,
    render_source_view,
    reproject_pair,
)
from depthcore.data.synthetic import intrinsics_for, render_sample
from depthcore.geometry.camera import (
    axis_angle_rotation,
    intrinsics_matrix,
    mirror_intrinsics,
    mirror_pose,
    rotation_angle,
)
from depthcore.geometry.warp import inverse_warp
from depthcore.losses.ssl import photometric_error

INTRINSICS = intrinsics_for(480, 640)
K = intrinsics_matrix(INTRINSICS)
ALPHA = 0.85
PLANE_DEPTH_M = 2.0
HOMOGRAPHY = {"max_rotation_deg": 10.0, "max_shift_px": 10.0, "plane_depth_m": PLANE_DEPTH_M}
MOTION = {"max_rotation_deg": 5.0, "max_translation_m": 0.15}


@pytest.fixture(scope="module")
def room():
    return render_sample(0, 0, height=480, width=640, views_per_room=2)


def warp_error(target_rgb, pair: Pair, depth, k: torch.Tensor | None = None) -> tuple[float, float]:
    """(mean photometric error over valid pixels, valid share) of the target rebuilt from the pair."""
    k = torch.from_numpy(K).float()[None] if k is None else k
    target = torch.from_numpy(np.ascontiguousarray(target_rgb)).permute(2, 0, 1)[None].float() / 255
    source = torch.from_numpy(np.ascontiguousarray(pair.rgb)).permute(2, 0, 1)[None].float() / 255
    depth_t = torch.as_tensor(np.ascontiguousarray(depth), dtype=torch.float32)[None, None]
    pose = torch.from_numpy(pair.pose).float()[None]
    source_valid = torch.from_numpy(np.ascontiguousarray(pair.valid))[None, None]
    warped, valid = inverse_warp(source, depth_t, pose, k, source_valid)
    error = photometric_error(target, torch.where(valid, warped, target), alpha=ALPHA)
    return error[valid].mean().item(), valid.float().mean().item()


# --------------------------------------------------------------------------------- decomposition
def random_plane_motion(rng):
    rotation = axis_angle_rotation(rng.normal(size=3), np.deg2rad(rng.uniform(0.0, 30.0)))
    translation = rng.normal(size=3) * 0.3
    normal = rng.normal(size=3)
    normal[2] = abs(normal[2]) + 1.0  # the plane faces the camera
    return rotation, translation, normal / np.linalg.norm(normal), rng.uniform(1.0, 5.0)


def test_decomposition_recovers_known_motions():
    rng = np.random.default_rng(0)
    for _ in range(25):
        rotation, translation, normal, distance = random_plane_motion(rng)
        euclidean = rotation + np.outer(translation, normal) / distance
        h = K @ euclidean @ np.linalg.inv(K) * rng.choice([-3.0, 0.5, 2.0])  # any scale, either sign
        candidates = decompose_homography(h, K)
        assert len(candidates) == 4
        errors = [
            max(np.abs(r - rotation).max(), np.abs(t - translation / distance).max(), np.abs(n - normal).max())
            for r, t, n in candidates
        ]
        assert min(errors) < 1e-9
        for r, t, n in candidates:  # every candidate induces the same homography
            assert np.allclose(r @ r.T, np.eye(3), atol=1e-9) and np.linalg.det(r) == pytest.approx(1.0)
            assert np.allclose(r + np.outer(t, n), euclidean, atol=1e-9)


def test_decomposition_of_a_roll_and_shift_by_hand():
    """S K R_z K^-1 = K (R_z + t' e_z^T) K^-1 with t' = (sx / fx, sy / fy, 0)."""
    fx, fy = K[0, 0], K[1, 1]
    roll = axis_angle_rotation(np.array([0.0, 0.0, 1.0]), np.deg2rad(7.0))
    shift = np.eye(3)
    shift[:2, 2] = (6.0, -4.0)
    candidates = decompose_homography(shift @ K @ roll @ np.linalg.inv(K), K)
    expected_t = np.array([6.0 / fx, -4.0 / fy, 0.0])
    matches = [
        c
        for c in candidates
        if np.allclose(c[0], roll, atol=1e-9) and np.allclose(c[1], expected_t) and np.allclose(c[2], [0, 0, 1])
    ]
    assert len(matches) == 1


def test_decomposition_of_a_pure_rotation():
    rotation = axis_angle_rotation(np.array([1.0, 2.0, 0.5]), 0.2)
    (candidate,) = decompose_homography(K @ rotation @ np.linalg.inv(K), K)
    assert np.allclose(candidate[0], rotation, atol=1e-12) and not candidate[1].any()


# ------------------------------------------------------------------------------ homography pairs
def test_homography_pair_is_reproduced_by_its_plane(room):
    pair = homography_pair(room.rgb, INTRINSICS, np.random.default_rng(1), **HOMOGRAPHY)
    rotation, translation = pair.pose[:3, :3], pair.pose[:3, 3]
    assert np.allclose(rotation[2], [0, 0, 1]) and np.allclose(rotation[:, 2], [0, 0, 1])  # a roll
    assert 0 < rotation_angle(rotation, np.eye(3)) <= np.deg2rad(HOMOGRAPHY["max_rotation_deg"])
    assert translation[2] == pytest.approx(0.0, abs=1e-12)
    limit = HOMOGRAPHY["max_shift_px"] / np.array([K[0, 0], K[1, 1]]) * PLANE_DEPTH_M
    assert np.all(np.abs(translation[:2]) <= limit) and np.any(translation[:2] != 0)
    assert 0.85 < pair.valid.mean() < 1.0 and not pair.rgb[~pair.valid].any()  # invalid corners are black

    errors = {d: warp_error(room.rgb, pair, np.full(room.depth.shape, d))[0] for d in (1.0, PLANE_DEPTH_M, 4.0)}
    assert errors[PLANE_DEPTH_M] < 0.01  # measured 0.004: two bilinear resamplings
    assert errors[1.0] > 5 * errors[PLANE_DEPTH_M] and errors[4.0] > 3 * errors[PLANE_DEPTH_M]
    # ... and the scene's true depth is not what such a pair rewards
    assert warp_error(room.rgb, pair, room.depth)[0] > 3 * errors[PLANE_DEPTH_M]


def test_homography_pair_without_shift_is_a_pure_rotation(room):
    settings = dict(HOMOGRAPHY, max_shift_px=0.0)
    pair = homography_pair(room.rgb, INTRINSICS, np.random.default_rng(2), **settings)
    assert not pair.pose[:3, 3].any()
    # a rotation about the optical axis is reproduced by any depth
    assert warp_error(room.rgb, pair, np.full(room.depth.shape, 0.5))[0] < 0.01


# ------------------------------------------------------------------------------- reprojection
def test_reproject_pair_is_consistent_with_its_pose(room):
    pair = reproject_pair(room.rgb, room.depth, INTRINSICS, np.random.default_rng(3), **MOTION)
    assert 0.8 < pair.valid.mean() < 1.0 and not pair.rgb[~pair.valid].any()
    truth, share = warp_error(room.rgb, pair, room.depth)
    inverse = Pair(rgb=pair.rgb, pose=np.linalg.inv(pair.pose), valid=pair.valid)
    assert truth < 0.012 and share > 0.8  # measured 0.005-0.008; the rendered second view: 0.007
    assert warp_error(room.rgb, inverse, room.depth)[0] > 4 * truth


def test_identity_motion_reproduces_the_target_and_marks_holes():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 4.0, size=(48, 64))
    depth[10:20, 30:40] = 0.0  # invalid ground truth: nothing to splat
    pair = render_source_view(rgb, depth, (40.0, 40.0, 31.5, 23.5), np.eye(4))
    np.testing.assert_array_equal(pair.valid, depth > 0)
    np.testing.assert_array_equal(pair.rgb, np.where(pair.valid[..., None], rgb, 0))


def test_nearest_surface_wins_and_disocclusions_are_holes():
    """Wall at 4 m, red square at 1 m, camera 0.2 m to the left (t_x = +0.2): f = 40 px moves the square
    by 40 * 0.2 / 1 = 8 px and the wall by 2 px to the right in the source."""
    rgb = np.full((48, 64, 3), 60, dtype=np.uint8)
    depth = np.full((48, 64), 4.0)
    rgb[16:32, 20:36] = (200, 0, 0)
    depth[16:32, 20:36] = 1.0
    pose = np.eye(4)
    pose[0, 3] = 0.2
    pair = render_source_view(rgb, depth, (40.0, 40.0, 31.5, 23.5), pose)
    assert (pair.rgb[16:32, 28:44] == (200, 0, 0)).all()  # including 38:44, where the wall lands too
    assert not pair.valid[16:32, 22:28].any()  # wall hidden behind the square in the target
    assert not pair.valid[:, :2].any() and pair.valid[:, 2:22].all()  # the target saw nothing left of column 2
    assert (pair.rgb[:16, 2:] == 60).all()


def test_mirrored_reproject_pair_stays_consistent(room):
    pair = reproject_pair(room.rgb, room.depth, INTRINSICS, np.random.default_rng(5), **MOTION)
    k = torch.from_numpy(K).float()[None]
    plain = warp_error(room.rgb, pair, room.depth, k)[0]
    mirrored_pose = mirror_pose(torch.from_numpy(pair.pose)).numpy()
    mirrored = Pair(rgb=pair.rgb[:, ::-1], pose=mirrored_pose, valid=pair.valid[:, ::-1])
    flipped = warp_error(room.rgb[:, ::-1], mirrored, room.depth[:, ::-1], mirror_intrinsics(k, 640))[0]
    assert flipped == pytest.approx(plain, rel=0.05)


# ------------------------------------------------------------------------- randomness and adapters
def test_generators_are_deterministic(room):
    crop_rgb, crop_depth = room.rgb[:120, :160], room.depth[:120, :160]
    for make in (
        lambda rng: homography_pair(crop_rgb, INTRINSICS, rng, **HOMOGRAPHY),
        lambda rng: reproject_pair(crop_rgb, crop_depth, INTRINSICS, rng, **MOTION),
    ):
        a, b, c = make(np.random.default_rng(7)), make(np.random.default_rng(7)), make(np.random.default_rng(8))
        for field in ("rgb", "pose", "valid"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert not np.array_equal(a.pose, c.pose)


def test_random_rigid_motion_respects_its_bounds():
    rng = np.random.default_rng(9)
    angles, lengths = [], []
    for _ in range(200):
        pose = random_rigid_motion(rng, max_rotation_deg=4.0, max_translation_m=0.1)
        rotation = pose[:3, :3]
        assert np.allclose(rotation @ rotation.T, np.eye(3)) and np.linalg.det(rotation) == pytest.approx(1.0)
        assert np.array_equal(pose[3], [0, 0, 0, 1])
        angles.append(np.rad2deg(rotation_angle(rotation, np.eye(3))))
        lengths.append(np.linalg.norm(pose[:3, 3]))
    assert max(angles) <= 4.0 + 1e-9 and max(angles) > 3.5 and min(angles) < 0.5
    assert max(lengths) <= 0.1 + 1e-12 and max(lengths) > 0.09


def test_dataset_pair_is_valid_everywhere(room):
    pair = dataset_pair(room.pair_rgb, room.pair_pose)
    assert pair.valid.all() and pair.pose.dtype == np.float64
    assert warp_error(room.rgb, pair, room.depth)[0] < 0.01


def test_training_samples_mirror_pairs_consistently(pipeline):
    """Through the training dataset: a mirrored sample (both images flipped, the pose mirrored, the principal
    point reflected) stays consistent: warping its source with the true depth reproduces its target as well
    as for the sample as stored."""
    from depthcore.data.batch import store_paths
    from depthcore.data.samples import TrainingDataset
    from depthcore.data.splits import read_split, split_indices

    codes = read_split(pipeline.split, 6)
    keys = ("rgb", "depth", "pair_rgb", "pair_pose", "pair_valid", "intrinsics")
    errors = {}
    for flip in ("none", "random"):
        data = TrainingDataset(
            stores=store_paths(pipeline), indices=split_indices(codes, "train"), keys=keys, flip=flip, seed=3
        )
        wanted = flip == "random"  # the first sample (over epochs) that is mirrored, or one as stored
        epoch, item = next(
            (e, i)
            for e in range(20)
            for i in range(len(data))
            if data.set_epoch(e) or data.is_flipped(int(data.indices[i])) == wanted
        )
        data.set_epoch(epoch)
        sample = data[item]
        batch = {k: v[None] for k, v in sample.items()}
        warped, valid = inverse_warp(
            batch["pair_rgb"], batch["depth"], batch["pair_pose"], batch["intrinsics"], batch["pair_valid"][:, None]
        )
        error = photometric_error(batch["rgb"], warped, alpha=0.85)
        errors[flip] = (error[valid].mean().item(), valid.float().mean().item())
    assert errors["random"][1] > 0.5 and errors["none"][1] > 0.5
    assert errors["random"][0] < 1.5 * errors["none"][0] + 0.01
    # the mirrored images with the pose as stored (not mirrored) do not fit
    unmirrored = mirror_pose(batch["pair_pose"])  # mirroring is its own inverse
    bad = inverse_warp(batch["pair_rgb"], batch["depth"], unmirrored, batch["intrinsics"])
    assert photometric_error(batch["rgb"], bad[0], alpha=0.85)[bad[1]].mean().item() > 2 * errors["random"][0]


def test_pairs_stage_refuses_bad_second_views_before_any_work(tmp_path):
    from conftest import make_params

    from depthcore.data.pairs import PairsError, write_pairs
    from depthcore.data.store import ResumableStore

    def dataset(name, *, pose=None, intrinsics=(518.9, 519.5, 31.5, 23.5)):
        store = ResumableStore(tmp_path / f"{name}.zarr", key=None)
        store.array("rgb", (2, 48, 64, 3), np.uint8)[:] = 0
        store.array("depth", (2, 48, 64), np.float32)[:] = 2.0
        if pose is not None:
            store.array("pair_rgb", (2, 48, 64, 3), np.uint8)[:] = 0
            store.array("pair_pose", (2, 4, 4), np.float32)[:] = np.broadcast_to(pose, (2, 4, 4))
        store.mark_done(2)
        return store.commit({"intrinsics": list(intrinsics)})

    cfg = make_params().pairs  # method: dataset
    out = tmp_path / "pairs.zarr"
    with pytest.raises(PairsError, match="has no second views .*homography"):
        write_pairs(cfg, dataset("single"), out, key=None)
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(PairsError, match="image 0 has a non-finite pose"):
        write_pairs(cfg, dataset("nan", pose=bad), out, key=None)
    far = np.eye(4)
    far[2, 3] = 5.0
    with pytest.raises(PairsError, match="pose out of range .*translation 5.00 m"):
        write_pairs(cfg, dataset("far", pose=far), out, key=None)
    with pytest.raises(PairsError, match="no usable intrinsics"):
        write_pairs(cfg, dataset("k", pose=np.eye(4), intrinsics=(0.0, 0.0, 1.0, 1.0)), out, key=None)
    assert not out.exists()
