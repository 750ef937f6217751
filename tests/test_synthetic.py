"""Synthetic rooms: determinism and exact geometry."""

import numpy as np

from depthcore.data.synthetic import (
    MAX_PAIR_ROTATION_DEG,
    MAX_PAIR_TRANSLATION_M,
    MIN_PAIR_TRANSLATION_M,
    Room,
    _texture,
    intrinsics_for,
    render,
    render_sample,
)

H, W = 120, 160


def test_same_seed_gives_identical_arrays_and_other_seed_differs():
    a = render_sample(3, 5, height=H, width=W, views_per_room=2)
    b = render_sample(3, 5, height=H, width=W, views_per_room=2)
    c = render_sample(4, 5, height=H, width=W, views_per_room=2)
    for name in ("rgb", "depth", "instances", "pair_rgb", "pair_pose"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert not np.array_equal(a.rgb, c.rgb)


def test_sample_contract_shapes_ranges_and_texture():
    s = render_sample(0, 0, height=H, width=W, views_per_room=4)
    assert s.rgb.shape == (H, W, 3) and s.rgb.dtype == np.uint8
    assert s.depth.shape == (H, W) and s.depth.dtype == np.float32
    assert 0.5 < s.depth.min() and s.depth.max() < 10.0
    assert s.instances.min() >= 1 and len(np.unique(s.instances)) >= 4  # room faces + furniture
    assert s.rgb.mean() > 20 and s.rgb.std() > 0.3 * s.rgb.mean()  # lit and textured, not a flat colour
    translation = np.linalg.norm(s.pair_pose[:3, 3])
    assert MIN_PAIR_TRANSLATION_M - 1e-6 <= translation <= MAX_PAIR_TRANSLATION_M + 1e-6
    angle = np.degrees(np.arccos(np.clip((np.trace(s.pair_pose[:3, :3]) - 1) / 2, -1, 1)))
    assert angle <= MAX_PAIR_ROTATION_DEG + 1e-3


def _empty_room(rng):
    lo, hi = np.array([-2.0, -3.0, 0.0]), np.array([2.0, 0.0, 6.0])
    return Room(lo=lo, hi=hi, faces=tuple(_texture(rng, i + 1, lo, hi) for i in range(6)), furniture=())


def test_depth_of_known_planes_at_known_pixels():
    room = _empty_room(np.random.default_rng(0))
    c = np.array([0.0, -1.5, 1.0])  # 1.5 m above the floor (y = 0), back wall at z = 6
    k = (100.0, 100.0, 80.0, 60.0)
    view = render(room, np.eye(3), c, k, H, W)
    # fronto-parallel back wall: z-depth is 5 m at every pixel that sees it, e.g. the principal point
    assert view.instances[60, 80] == 6
    np.testing.assert_allclose(view.depth[60, 80], 5.0, rtol=1e-6)
    np.testing.assert_allclose(view.depth[view.instances == 6], 5.0, rtol=1e-6)
    # floor pixel in row v: z = h * fy / (v - cy)
    v = 115
    assert view.instances[v, 80] == 4  # floor face (y max)
    np.testing.assert_allclose(view.depth[v, 80], 1.5 * 100.0 / (v - 60.0), rtol=1e-6)


def backproject(depth, intrinsics):
    """H x W z-depth -> H x W x 3 camera points (pixel centres at integer coordinates)."""
    fx, fy, cx, cy = intrinsics
    v, u = np.mgrid[0 : depth.shape[0], 0 : depth.shape[1]].astype(np.float64)
    return np.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth.astype(np.float64)], axis=-1)


def project(points, intrinsics):
    fx, fy, cx, cy = intrinsics
    z = points[..., 2]
    return fx * points[..., 0] / z + cx, fy * points[..., 1] / z + cy, z


def transform_points(pose, points):
    return points @ pose[:3, :3].T + pose[:3, 3]


def test_second_view_reprojects_onto_the_same_surface_point():
    height, width = 240, 320
    s = render_sample(1, 2, height=height, width=width, views_per_room=2)
    k = intrinsics_for(height, width)
    points_src = transform_points(s.pair_pose.astype(np.float64), backproject(s.depth, k))
    u, v, z = project(points_src, k)
    ui, vi = np.round(u).astype(int), np.round(v).astype(int)
    inside = (ui >= 0) & (ui < width) & (vi >= 0) & (vi < height) & (z > 0)
    # the pair's own depth and ids, re-rendered from the same room and second pose
    from depthcore.data.synthetic import camera_pose, make_room, pair_motion

    room = make_room(np.random.default_rng([1, 1]))
    rng = np.random.default_rng([1, 1, 0, 1])
    r, c = camera_pose(rng, room)
    r2, c2, pose = pair_motion(rng, r, c)
    np.testing.assert_allclose(pose, s.pair_pose, atol=1e-6)
    second = render(room, r2, c2, k, height, width)
    np.testing.assert_array_equal(second.rgb, s.pair_rgb)
    same_object = second.instances[vi[inside], ui[inside]] == s.instances[inside]
    assert same_object.mean() > 0.95  # only occlusion boundaries and rounding disagree
    z_seen = second.depth[vi[inside], ui[inside]][same_object]
    rel = np.abs(z_seen - z[inside][same_object]) / z[inside][same_object]
    assert np.median(rel) < 0.005 and np.mean(rel < 0.02) > 0.97


def test_brightness_falls_with_distance_under_the_camera_lamp():
    """The lamp at the camera makes brightness a depth cue (as in flash photography): over many rooms,
    near surfaces are brighter than far ones."""
    near, far = [], []
    for index in range(8):
        s = render_sample(5, index, height=H, width=W, views_per_room=2)
        brightness = s.rgb.astype(float).mean(axis=-1)
        near.append(brightness[s.depth < 2.5].mean() if (s.depth < 2.5).any() else np.nan)
        far.append(brightness[s.depth > 4.5].mean() if (s.depth > 4.5).any() else np.nan)
    assert np.nanmean(near) > 2 * np.nanmean(far)
