"""View pairs for self-supervised training, generated once per image by the cached ``pairs`` stage.

Every generator works on one full-frame image and returns a :class:`Pair`: the *target* is always the
dataset image itself (the model predicts its depth) and the pair holds the *source* view, the rigid
target-to-source pose (``X_source = pose @ X_target``, metres; camera frame x right, y down,
z forward) and which source pixels hold real content. Both views share the intrinsics
``(fx, fy, cx, cy)`` in pixels, with integer pixel coordinates at pixel centres
(see :mod:`depthcore.geometry.frame`).

Three methods (``pair_method`` in the pairs store):

- :func:`dataset_pair`: the source's own second views (the synthetic rooms have them).
- :func:`homography_pair`: the paper's pairs, a rotated and shifted copy of the image.
- :func:`reproject_pair`: a new view rendered from the image and its ground-truth depth (an upper
  bound, not a label-free method).

All randomness comes from the ``numpy.random.Generator`` passed in, so a pair is a function of the
generator's state. Everything is vectorised numpy (no loops over pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from depthcore.data.store import ResumableStore, Store
from depthcore.errors import DepthcoreError
from depthcore.geometry.camera import axis_angle_rotation, intrinsics_matrix, rigid, rotation_angle, unproject

# Source-camera depth (metres) at or below which a point counts as behind the camera.
MIN_DEPTH_M = 1e-3
# Sub-pixel offsets (pixels, along each axis) of the samples each target pixel splats in reproject_pair:
# 2 x 2 samples per pixel close the cracks a single sample leaves wherever the new view magnifies the surface.
SPLAT_OFFSETS = (-0.25, 0.25)
# Singular values of a normalised homography closer than this are equal (a pure rotation: no plane, no translation).
DEGENERATE_SPREAD = 1e-9
# Tolerance (pixels) on the image border when deciding whether a sampling point lies inside the image.
BORDER_TOL_PX = 1e-6
UINT8_MAX = 255


@dataclass(frozen=True)
class Pair:
    """A source view for one target image.

    rgb: H x W x 3 uint8 source view (black where invalid). pose: 4 x 4 float64 rigid transform
    target-to-source, metres. valid: H x W bool, source pixels that hold real image content.
    """

    rgb: np.ndarray
    pose: np.ndarray
    valid: np.ndarray


# ----------------------------------------------------------------------------------------- basics
def random_rigid_motion(rng: np.random.Generator, *, max_rotation_deg: float, max_translation_m: float) -> np.ndarray:
    """4 x 4 float64 random rigid motion (used as a target-to-source pose).

    Rotation: angle uniform in [0, max_rotation_deg] about a uniformly random axis. Translation:
    uniformly random direction, length uniform in [0, max_translation_m] metres.
    """
    axis = rng.normal(size=3)
    angle = np.deg2rad(rng.uniform(0.0, max_rotation_deg))
    direction = rng.normal(size=3)
    length = rng.uniform(0.0, max_translation_m)
    return rigid(axis_angle_rotation(axis, angle), direction / np.linalg.norm(direction) * length)


def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) H x W float64 pixel-centre coordinates (column, row)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return u, v


def _inside(u: np.ndarray, v: np.ndarray, height: int, width: int) -> np.ndarray:
    """Whether (u, v) lies within the pixel-centre hull [0, W-1] x [0, H-1] (bilinear needs no padding)."""
    inside_u = (u >= -BORDER_TOL_PX) & (u <= width - 1 + BORDER_TOL_PX)
    return inside_u & (v >= -BORDER_TOL_PX) & (v <= height - 1 + BORDER_TOL_PX)


def _sample_bilinear(rgb: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear samples of H x W x 3 ``rgb`` at (u, v) (any shape ...), float64 ... x 3.

    Points outside the image are clamped to its border (callers mask them): scipy's ``constant`` mode
    would return the fill value for a point a rounding error outside an edge pixel's centre.
    """
    height, width = rgb.shape[:2]
    coords = np.stack([np.clip(v, 0, height - 1).ravel(), np.clip(u, 0, width - 1).ravel()])
    channels = [
        ndimage.map_coordinates(rgb[..., c].astype(np.float64), coords, order=1, mode="nearest")
        for c in range(rgb.shape[-1])
    ]
    return np.stack(channels, axis=-1).reshape(*u.shape, rgb.shape[-1])


def _to_uint8(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.clip(np.rint(values), 0, UINT8_MAX).astype(np.uint8)
    out[~valid] = 0
    return out


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be H x W x 3 uint8, got {rgb.shape} {rgb.dtype}")


# ------------------------------------------------------------------------------------ dataset views
def dataset_pair(pair_rgb: np.ndarray, pair_pose: np.ndarray) -> Pair:
    """The dataset's own second view: H x W x 3 uint8 image and its 4 x 4 target-to-source pose; valid everywhere."""
    _check_rgb(pair_rgb)
    pose = np.asarray(pair_pose, dtype=np.float64)
    if pose.shape != (4, 4):
        raise ValueError(f"pair_pose must be 4 x 4, got {pose.shape}")
    return Pair(rgb=pair_rgb, pose=pose, valid=np.ones(pair_rgb.shape[:2], dtype=bool))


# --------------------------------------------------------------------------------------- homographies
def decompose_homography(h: np.ndarray, k: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """All (R, t, n) with h ~ K (R + t n^T) K^-1: the motions and planes that induce the homography.

    h: 3 x 3 pixel homography mapping target pixels to source pixels (any scale and sign). k: 3 x 3
    intrinsics of both views. The plane is n^T X = d in the target camera (unit normal n, d > 0);
    R, t are the target-to-source rotation and translation, and a homography fixes only t / d: the
    returned t is translation / plane distance. Returns the 4 candidates of the SVD method of
    Faugeras and Lustman (1988) in the form of Ma, Soatto, Kosecka and Sastry (2004, sec. 5.3):
    two (R, t, n) and their twins (R, -t, -n); callers pick the physically valid one (points in front
    of both cameras). A pure rotation (all singular values equal) gives one candidate (R, 0, e_z).
    The sign of h is fixed by assuming that the plane is seen along the target's principal ray.
    """
    k = np.asarray(k, dtype=np.float64)
    a = np.linalg.inv(k) @ np.asarray(h, dtype=np.float64) @ k
    _, sigma, vt = np.linalg.svd(a)
    a = a / sigma[1]  # scale: the middle singular value of R + t n^T is 1
    if a[2, 2] < 0:  # sign: a point of the plane on the target's optical axis must lie in front of the source
        a = -a
    s1, s3 = sigma[0] / sigma[1], sigma[2] / sigma[1]
    if s1 - s3 < DEGENERATE_SPREAD:
        u_rot, _, vt_rot = np.linalg.svd(a)
        return [(u_rot @ vt_rot, np.zeros(3), np.array([0.0, 0.0, 1.0]))]
    v1, v2, v3 = vt  # right singular vectors = eigenvectors of a^T a, by decreasing singular value
    norm = np.sqrt(s1**2 - s3**2)
    w1, w3 = np.sqrt(max(1.0 - s3**2, 0.0)), np.sqrt(max(s1**2 - 1.0, 0.0))
    candidates = []
    for u_vec in ((w1 * v1 + w3 * v3) / norm, (w1 * v1 - w3 * v3) / norm):
        basis = np.column_stack([v2, u_vec, np.cross(v2, u_vec)])
        av2, au = a @ v2, a @ u_vec
        image = np.column_stack([av2, au, np.cross(av2, au)])
        rotation = image @ basis.T
        normal = np.cross(v2, u_vec)
        translation = (a - rotation) @ normal
        candidates.append((rotation, translation, normal))
        candidates.append((rotation, -translation, -normal))
    return candidates


def _in_front_of_both(rotation: np.ndarray, t_over_d: np.ndarray, normal: np.ndarray, rays: np.ndarray) -> bool:
    """Whether the plane n^T X = 1 seen along ``rays`` (N x 3, z = 1) lies in front of both cameras."""
    along = rays @ normal
    if np.any(along <= 0):
        return False
    points = rays / along[:, None]
    return bool(np.all((points @ rotation.T + t_over_d)[:, 2] > 0))


def pose_from_homography(
    h: np.ndarray, k: np.ndarray, applied_rotation: np.ndarray, *, height: int, width: int, plane_depth_m: float
) -> np.ndarray:
    """4 x 4 target-to-source pose of homography ``h`` (target pixels -> source pixels), metres.

    Of the candidates of :func:`decompose_homography`, keeps those whose plane lies in front of both
    cameras at the four image corners and returns the one whose rotation is closest to
    ``applied_rotation``, with t / d scaled by ``plane_depth_m`` (the plane's distance, metres).
    """
    corners = np.array([[0.0, 0.0, 1.0], [width - 1, 0.0, 1.0], [0.0, height - 1, 1.0], [width - 1, height - 1, 1.0]])
    rays = corners @ np.linalg.inv(k).T
    candidates = [c for c in decompose_homography(h, k) if _in_front_of_both(*c, rays)]
    if not candidates:
        raise ValueError("no decomposition of the homography puts the plane in front of both cameras")
    rotation, t_over_d, _ = min(candidates, key=lambda c: rotation_angle(c[0], applied_rotation))
    return rigid(rotation, t_over_d * plane_depth_m)


def homography_pair(
    rgb: np.ndarray,
    intrinsics,
    rng: np.random.Generator,
    *,
    max_rotation_deg: float,
    max_shift_px: float,
    plane_depth_m: float,
) -> Pair:
    """The paper's pairs: the source is the target rolled about the optical axis and shifted.

    rgb: H x W x 3 uint8 target. intrinsics: (fx, fy, cx, cy) pixels. The roll angle is uniform in
    +-max_rotation_deg, the shift (sx, sy) uniform in +-max_shift_px per axis. Target pixel p maps to
    source pixel H p with H = S K R_z K^-1 (R_z the roll, S the shift): an in-plane rotation about
    the principal point (exactly a pixel-space rotation when fx = fy; NYUv2's differ by 0.1%) followed
    by the shift. The source is sampled bilinearly at H^-1 of each of its pixels; pixels whose
    pre-image falls outside the target are invalid (black).

    The pose is recovered by decomposing H with the real K (:func:`pose_from_homography`): the
    candidate in front of both cameras whose rotation is closest to R_z. K^-1 H K = R_z + t' e_z^T
    with t' = (sx / fx, sy / fy, 0), so the decomposition yields R = R_z, n = e_z and t / d = t'. A
    homography fixes only t / d; the translation is t' * ``plane_depth_m``: we declare the plane
    to lie ``plane_depth_m`` metres away.

    Photometric optimum: the pair is exactly the image of the fronto-parallel plane Z = plane_depth_m
    seen from the two cameras, so the depth that minimises the photometric error is that constant
    plane, whatever the scene (at depth D a pixel moves by K t' plane_depth_m / D instead of K t').
    These pairs teach "everything is plane_depth_m away", not the scene's depth; with no shift the
    pose is a pure rotation and every depth is optimal.
    (The authors decompose with cv2 and a focal length of 0.015 px instead of ~519 px and use t / d,
    about 10 px / 0.015 px = 670 plane distances, as metres, warping with that same K: their optimum
    is the same kind of constant plane, at depth 1.)
    """
    _check_rgb(rgb)
    height, width = rgb.shape[:2]
    k = intrinsics_matrix(intrinsics)
    angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    shift = rng.uniform(-max_shift_px, max_shift_px, size=2)
    roll = axis_angle_rotation(np.array([0.0, 0.0, 1.0]), angle)
    shift_matrix = np.eye(3)
    shift_matrix[:2, 2] = shift
    h = shift_matrix @ k @ roll @ np.linalg.inv(k)

    u, v = _pixel_grid(height, width)
    pre = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(h).T
    pre_u, pre_v = pre[..., 0] / pre[..., 2], pre[..., 1] / pre[..., 2]
    valid = _inside(pre_u, pre_v, height, width)
    source = _to_uint8(_sample_bilinear(rgb, pre_u, pre_v), valid)
    pose = pose_from_homography(h, k, roll, height=height, width=width, plane_depth_m=plane_depth_m)
    return Pair(rgb=source, pose=pose, valid=valid)


# ------------------------------------------------------------------------------------ reprojection
def _splat_depth(depth: np.ndarray, k: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """H x W source-view z-depth (metres, inf where nothing lands) by z-buffered forward splatting.

    Every valid target pixel sends len(SPLAT_OFFSETS)^2 sub-pixel samples (at its own depth) to the
    nearest source pixel; the nearest surface wins.
    """
    height, width = depth.shape
    rows, cols = np.nonzero(np.isfinite(depth) & (depth > 0))
    z = depth[rows, cols].astype(np.float64)
    du, dv = np.meshgrid(SPLAT_OFFSETS, SPLAT_OFFSETS)
    u = (cols[None, :] + du.reshape(-1, 1)).ravel()
    v = (rows[None, :] + dv.reshape(-1, 1)).ravel()
    z = np.tile(z, du.size)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    points = unproject(u, v, z, k) @ pose[:3, :3].T + pose[:3, 3]
    z_s = points[:, 2]
    front = z_s > MIN_DEPTH_M
    points, z_s = points[front], z_s[front]
    u_s = np.rint(fx * points[:, 0] / z_s + cx)
    v_s = np.rint(fy * points[:, 1] / z_s + cy)
    inside = (u_s >= 0) & (u_s <= width - 1) & (v_s >= 0) & (v_s <= height - 1)
    index = v_s[inside].astype(np.int64) * width + u_s[inside].astype(np.int64)
    buffer = np.full(height * width, np.inf)
    np.minimum.at(buffer, index, z_s[inside])
    return buffer.reshape(height, width)


def render_source_view(rgb: np.ndarray, depth: np.ndarray, intrinsics, pose: np.ndarray) -> Pair:
    """The view of the target's surface from a camera at ``pose`` (target-to-source, 4 x 4, metres).

    rgb: H x W x 3 uint8 target; depth: H x W z-depth, metres, 0 = invalid; intrinsics:
    (fx, fy, cx, cy) pixels, shared by both views. The target's surface (each valid pixel as
    2 x 2 sub-pixel samples at its depth) is splatted into the source camera with a z-buffer
    (nearest surface wins), giving the source depth of every pixel that receives a sample; each such
    pixel then takes the target's colour, sampled bilinearly where its 3-D point projects into the
    target. Source pixels that receive nothing (outside the target's field of view, disocclusions,
    invalid depth) are invalid and black.
    """
    _check_rgb(rgb)
    if depth.shape != rgb.shape[:2]:
        raise ValueError(f"depth {depth.shape} does not match rgb {rgb.shape}")
    k = intrinsics_matrix(intrinsics)
    pose = np.asarray(pose, dtype=np.float64)
    z_source = _splat_depth(depth, k, pose)
    height, width = depth.shape
    u, v = _pixel_grid(height, width)
    landed = np.isfinite(z_source)
    z = np.where(landed, z_source, 1.0)
    back = (unproject(u, v, z, k) - pose[:3, 3]) @ pose[:3, :3]  # source frame -> target frame: R^T (X - t)
    z_t = np.maximum(back[..., 2], MIN_DEPTH_M)
    u_t = k[0, 0] * back[..., 0] / z_t + k[0, 2]
    v_t = k[1, 1] * back[..., 1] / z_t + k[1, 2]
    valid = landed & (back[..., 2] > MIN_DEPTH_M) & _inside(u_t, v_t, height, width)
    source = _to_uint8(_sample_bilinear(rgb, u_t, v_t), valid)
    return Pair(rgb=source, pose=pose, valid=valid)


def reproject_pair(
    rgb: np.ndarray,
    depth: np.ndarray,
    intrinsics,
    rng: np.random.Generator,
    *,
    max_rotation_deg: float,
    max_translation_m: float,
) -> Pair:
    """A geometrically valid source view rendered from the target and its ground-truth depth.

    rgb: H x W x 3 uint8 target; depth: H x W ground-truth z-depth, metres, 0 = invalid;
    intrinsics: (fx, fy, cx, cy) pixels. The pose is :func:`random_rigid_motion` and the view is
    rendered by :func:`render_source_view` (z-buffered forward splatting; holes invalid and black).

    Because it renders the second view from **ground-truth depth**, this method is an upper bound on
    what self-supervision could learn from real second views, not a label-free method: the depth
    labels leak into the training signal through the pair.
    """
    pose = random_rigid_motion(rng, max_rotation_deg=max_rotation_deg, max_translation_m=max_translation_m)
    return render_source_view(rgb, depth, intrinsics, pose)


# ------------------------------------------------------------------------------------------- the stage
PAIRS_VERSION = 1
MAX_POSE_ROTATION_DEG = 45.0  # a dataset pose beyond these bounds is no small camera motion: refused
MAX_POSE_TRANSLATION_M = 2.0


class PairsError(DepthcoreError, ValueError):
    """Second views are missing or their poses are not finite or out of range."""


def check_pose(pose: np.ndarray, index: int) -> None:
    """PairsError unless ``pose`` (4 x 4) is a finite rigid motion within the bounds above."""
    if not np.isfinite(pose).all():
        raise PairsError(f"the second view of image {index} has a non-finite pose: {pose.tolist()}")
    angle = np.degrees(rotation_angle(np.eye(3), pose[:3, :3]))
    shift = float(np.linalg.norm(pose[:3, 3]))
    orthonormal = np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-4)
    if not orthonormal or angle > MAX_POSE_ROTATION_DEG or shift > MAX_POSE_TRANSLATION_M:
        raise PairsError(
            f"the second view of image {index} has a pose out of range (rotation {angle:.1f} deg, translation "
            f"{shift:.2f} m, orthonormal {orthonormal}; at most {MAX_POSE_ROTATION_DEG} deg and "
            f"{MAX_POSE_TRANSLATION_M} m): not a small camera motion between two views of one scene"
        )


def write_pairs(cfg, dataset: Path | str, out: Path | str, *, key: str | None, progress: bool = True) -> Path:
    """The pairs stage: a second view for every image of ``dataset`` by ``cfg.method`` (the pairs section),
    seeded by (``cfg.seed``, image index), into ``out``: ``pair_rgb`` (N, H, W, 3) uint8, ``pair_pose``
    (N, 4, 4) float32 target-to-source, ``pair_valid`` (N, H, W) bool; attrs: the method and settings.
    Checks every source image before any work; resumable (same ``key``) and atomic."""
    data = Store(dataset, required=("rgb", "depth"))
    n, h, w = data.shape("depth")
    if cfg.method == "dataset":
        if "pair_rgb" not in data or "pair_pose" not in data:
            raise PairsError(
                f"pairs.method is 'dataset' but {dataset} has no second views (pair_rgb, pair_pose): use "
                "pairs.method homography (the paper's) or reproject"
            )
        poses = data.read("pair_pose")
        for i in range(n):
            check_pose(poses[i], i)
    intrinsics = tuple(data.attrs["intrinsics"])
    if len(intrinsics) != 4 or not np.isfinite(intrinsics).all() or min(intrinsics[:2]) <= 0:
        raise PairsError(f"{dataset} has no usable intrinsics [fx, fy, cx, cy] (got {intrinsics})")
    store = ResumableStore(out, key=key)
    arrays = {
        "pair_rgb": store.array("pair_rgb", (n, h, w, 3), np.uint8),
        "pair_pose": store.array("pair_pose", (n, 4, 4), np.float32),
        "pair_valid": store.array("pair_valid", (n, h, w), np.bool_),
    }
    for i in tqdm(
        range(store.done, n), desc=f"pairs ({cfg.method})", total=n, initial=store.done, disable=not progress
    ):
        pair = make_pair(cfg, data, i, intrinsics)
        arrays["pair_rgb"][i], arrays["pair_pose"][i], arrays["pair_valid"][i] = pair.rgb, pair.pose, pair.valid
        store.mark_done(i + 1)
    return store.commit({"method": cfg.method, "settings": cfg.to_dict(), "version": PAIRS_VERSION})


def make_pair(cfg, data: Store, index: int, intrinsics) -> Pair:
    """The pair of image ``index`` by ``cfg.method`` (the pairs section), from its own generator (cfg.seed, index)."""
    if cfg.method == "dataset":
        return dataset_pair(data.read("pair_rgb", index), data.read("pair_pose", index))
    rng = np.random.default_rng([cfg.seed, index])
    rgb = data.read("rgb", index)
    if cfg.method == "homography":
        return homography_pair(
            rgb,
            intrinsics,
            rng,
            max_rotation_deg=cfg.max_rotation_deg,
            max_shift_px=cfg.max_shift_px,
            plane_depth_m=cfg.plane_depth_m,
        )
    return reproject_pair(
        rgb,
        data.read("depth", index),
        intrinsics,
        rng,
        max_rotation_deg=cfg.max_rotation_deg,
        max_translation_m=cfg.max_translation_m,
    )
