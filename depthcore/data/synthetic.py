"""Synthetic indoor rooms rendered by ray casting in numpy: the offline data source.

Each room (= scene) is an axis-aligned box (floor, ceiling, four walls) with furniture-like boxes
standing on the floor. Surfaces carry procedural textures (stripes, checks, sinusoids) so images
have gradients, and are lit by surface orientation (Lambert + ambient). The camera follows the
NYUv2 intrinsics scaled to the requested size, so depth is exact metric z-depth (about 1-9 m).

World frame: x right, y down, z forward (the camera frame of an unrotated camera). A camera pose is
(R, c): ``X_world = R @ X_cam + c``. Every view has a second view from a small known motion
(5-15 cm, 1-4 degrees); ``pair_pose`` is the 4 x 4 target-to-source transform
``X_source = pair_pose @ X_target`` (target = the main view), as in monodepth2.

Rendering depends only on ``(seed, image index)``, so the same seed gives byte-identical arrays and
any image can be rendered alone (a resumed ``prepare`` renders only what is missing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depthcore.geometry.camera import axis_angle_rotation
from depthcore.geometry.frame import NYU_HEIGHT, NYU_INTRINSICS, NYU_WIDTH

MIN_PAIR_TRANSLATION_M, MAX_PAIR_TRANSLATION_M = 0.05, 0.15
MIN_PAIR_ROTATION_DEG, MAX_PAIR_ROTATION_DEG = 1.0, 4.0
# Lighting: a directional light (Lambert) times ambient + a lamp at the camera whose brightness falls off with
# distance, so brightness carries depth as in flash photography: a cue a network can learn from a few images.
AMBIENT = 0.15
LAMP_RANGE_M = 2.5
_LIGHT = np.array([0.3, -0.8, -0.5]) / np.linalg.norm([0.3, -0.8, -0.5])  # towards the light (y down)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box [lo, hi] in world metres with a texture; ``object_id`` >= 1."""

    lo: np.ndarray
    hi: np.ndarray
    object_id: int
    color_a: np.ndarray
    color_b: np.ndarray
    frequency: float
    pattern: int


@dataclass(frozen=True)
class Room:
    """The room box (its 6 faces are objects 1..6) plus furniture boxes (objects 7..)."""

    lo: np.ndarray
    hi: np.ndarray
    faces: tuple[Box, ...]
    furniture: tuple[Box, ...]


@dataclass(frozen=True)
class View:
    """One rendered image. rgb H x W x 3 uint8; depth H x W float32 metres (z-depth, > 0);
    instances H x W int32 object ids (>= 1, every pixel hits a surface)."""

    rgb: np.ndarray
    depth: np.ndarray
    instances: np.ndarray


def _texture(rng: np.random.Generator, object_id: int, lo, hi) -> Box:
    base = rng.uniform(0.25, 0.95, size=3)
    other = np.clip(base * rng.uniform(0.4, 0.8) + rng.uniform(-0.1, 0.1, size=3), 0.05, 1.0)
    return Box(
        lo=np.asarray(lo, float),
        hi=np.asarray(hi, float),
        object_id=object_id,
        color_a=base,
        color_b=other,
        frequency=float(rng.uniform(1.5, 6.0)),
        pattern=int(rng.integers(0, 3)),
    )


def make_room(rng: np.random.Generator) -> Room:
    """Random room 3-5 m wide, 4-7 m deep, 2.5-3 m high, with 2-5 furniture boxes."""
    width, length, height = rng.uniform(3.0, 5.0), rng.uniform(4.0, 7.0), rng.uniform(2.5, 3.0)
    lo = np.array([-width / 2, -height, 0.0])  # ceiling at y = -height, floor at y = 0
    hi = np.array([width / 2, 0.0, length])
    faces = tuple(_texture(rng, i + 1, lo, hi) for i in range(6))
    furniture = []
    for k in range(int(rng.integers(2, 6))):
        size = np.array([rng.uniform(0.4, 1.4), rng.uniform(0.4, 1.6), rng.uniform(0.4, 1.2)])
        x = rng.uniform(lo[0] + 0.1, hi[0] - 0.1 - size[0])
        z = rng.uniform(2.2, hi[2] - 0.1 - size[2])  # cameras stand at z < 1.2: boxes stay >= 1 m away
        box_lo = np.array([x, -size[1], z])
        furniture.append(_texture(rng, 7 + k, box_lo, box_lo + size))
    return Room(lo=lo, hi=hi, faces=faces, furniture=tuple(furniture))


def camera_pose(rng: np.random.Generator, room: Room) -> tuple[np.ndarray, np.ndarray]:
    """A camera near the back wall looking into the room: (R camera-to-world, centre c)."""
    c = np.array(
        [
            rng.uniform(room.lo[0] + 1.0, room.hi[0] - 1.0),
            -rng.uniform(1.2, 1.6),
            rng.uniform(0.4, 1.2),
        ]
    )
    yaw, pitch = np.deg2rad(rng.uniform(-15, 15)), np.deg2rad(rng.uniform(-12, 3))
    r = axis_angle_rotation(np.array([0.0, 1.0, 0.0]), yaw) @ axis_angle_rotation(np.array([1.0, 0.0, 0.0]), pitch)
    return r, c


def pair_motion(rng: np.random.Generator, r: np.ndarray, c: np.ndarray):
    """Second camera (R2, c2) from a small motion, and the 4 x 4 target-to-source pose."""
    direction = rng.normal(size=3)
    t_cam = direction / np.linalg.norm(direction) * rng.uniform(MIN_PAIR_TRANSLATION_M, MAX_PAIR_TRANSLATION_M)
    d_r = axis_angle_rotation(rng.normal(size=3), np.deg2rad(rng.uniform(MIN_PAIR_ROTATION_DEG, MAX_PAIR_ROTATION_DEG)))
    r2, c2 = r @ d_r, c + r @ t_cam
    pose = np.eye(4)
    pose[:3, :3] = r2.T @ r
    pose[:3, 3] = r2.T @ (c - c2)
    return r2, c2, pose


def render(room: Room, r: np.ndarray, c: np.ndarray, intrinsics, height: int, width: int) -> View:
    """Ray-cast the room from camera (r, c). See :class:`View` for shapes and units."""
    fx, fy, cx, cy = intrinsics
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    d_cam = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
    d = d_cam @ r.T  # world ray per pixel, scaled so that t = camera z-depth
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d

    # Room interior: the exit point of the box.
    t_bound = np.where(d > 0, (room.hi - c) * inv, (room.lo - c) * inv)
    t_bound = np.where(np.abs(d) < 1e-12, np.inf, t_bound)
    axis = np.argmin(t_bound, axis=-1)
    t = np.take_along_axis(t_bound, axis[..., None], -1)[..., 0]
    positive = np.take_along_axis(d, axis[..., None], -1)[..., 0] > 0
    face = axis * 2 + positive  # 0: x-lo 1: x-hi 2: ceiling 3: floor 4: z-lo 5: z-hi
    hit_ids = face + 1
    normal = np.zeros(d.shape)
    np.put_along_axis(normal, axis[..., None], np.where(positive, -1.0, 1.0)[..., None], -1)

    for box in room.furniture:  # slab test; nearest entry point wins
        t1, t2 = (box.lo - c) * inv, (box.hi - c) * inv
        t_near_axes = np.minimum(t1, t2)
        t_near = np.nanmax(t_near_axes, axis=-1)
        t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
        hit = (t_near < t_far) & (t_near > 0) & (t_near < t)
        if not hit.any():
            continue
        box_axis = np.nanargmax(t_near_axes, axis=-1)
        box_normal = np.zeros(d.shape)
        sign = -np.sign(np.take_along_axis(d, box_axis[..., None], -1))
        np.put_along_axis(box_normal, box_axis[..., None], sign, -1)
        t = np.where(hit, t_near, t)
        hit_ids = np.where(hit, box.object_id, hit_ids)
        normal = np.where(hit[..., None], box_normal, normal)

    points = c + t[..., None] * d
    rgb = _shade(room, hit_ids, points, normal, t)
    return View(rgb=rgb, depth=t.astype(np.float32), instances=hit_ids.astype(np.int32))


def _shade(room: Room, ids: np.ndarray, points: np.ndarray, normal: np.ndarray, depth: np.ndarray) -> np.ndarray:
    colour = np.zeros(points.shape)
    for box in (*room.faces, *room.furniture):
        mask = ids == box.object_id
        if not mask.any():
            continue
        p = points[mask]
        n_axis = np.argmax(np.abs(normal[mask]), axis=-1)
        # two in-plane coordinates of each surface point
        a = np.where(n_axis == 0, p[:, 2], p[:, 0])
        b = np.where(n_axis == 1, p[:, 2], p[:, 1])
        f = box.frequency
        if box.pattern == 0:  # stripes with a soft wave
            w = 0.5 + 0.5 * np.sin(2 * np.pi * f * a + 1.5 * np.sin(2 * np.pi * 0.7 * b))
        elif box.pattern == 1:  # checks
            w = ((np.floor(f * a) + np.floor(f * b)) % 2).astype(float) * 0.8 + 0.1
        else:  # blobs
            w = 0.5 + 0.25 * (np.sin(2 * np.pi * f * a) + np.sin(2 * np.pi * 1.3 * f * b))
        colour[mask] = w[:, None] * box.color_a + (1 - w[:, None]) * box.color_b
    lambert = np.clip(normal @ _LIGHT, 0.0, 1.0)
    light = 0.35 + 0.65 * lambert
    falloff = LAMP_RANGE_M**2 / (LAMP_RANGE_M**2 + depth**2)  # a lamp at the camera: inverse-square beyond its range
    out = colour * (light * (AMBIENT + (1.0 - AMBIENT) * falloff))[..., None]
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SyntheticSample:
    """Everything ``prepare`` stores for one synthetic image (arrays as in the dataset contract)."""

    rgb: np.ndarray  # H x W x 3 uint8
    depth: np.ndarray  # H x W float32, metres
    instances: np.ndarray  # H x W int32
    pair_rgb: np.ndarray  # H x W x 3 uint8, the second view
    pair_pose: np.ndarray  # 4 x 4 float32, target-to-source
    scene: int


def intrinsics_for(height: int, width: int) -> tuple[float, float, float, float]:
    """NYUv2 intrinsics (fx, fy, cx, cy) resampled from 480 x 640 to ``height`` x ``width``."""
    sx, sy = width / NYU_WIDTH, height / NYU_HEIGHT
    fx, fy, cx, cy = NYU_INTRINSICS
    return (fx * sx, fy * sy, cx * sx, cy * sy)


def render_sample(
    seed: int, index: int, *, views_per_room: int, height: int = NYU_HEIGHT, width: int = NYU_WIDTH
) -> SyntheticSample:
    """Render image ``index`` of the set with ``seed``; depends on nothing else."""
    scene = index // views_per_room
    room = make_room(np.random.default_rng([seed, scene]))
    rng = np.random.default_rng([seed, scene, index % views_per_room, 1])
    r, c = camera_pose(rng, room)
    r2, c2, pose = pair_motion(rng, r, c)
    intrinsics = intrinsics_for(height, width)
    main = render(room, r, c, intrinsics, height, width)
    second = render(room, r2, c2, intrinsics, height, width)
    return SyntheticSample(
        rgb=main.rgb,
        depth=main.depth,
        instances=main.instances,
        pair_rgb=second.rgb,
        pair_pose=pose.astype(np.float32),
        scene=scene,
    )
