"""Camera geometry: rotations, rigid motions, intrinsics, and what a horizontal mirror does to them.

Camera frame: x right, y down, z forward, metres. Integer pixel coordinates are pixel centres (pixel
(row v, column u) sits at (u, v)). A pose is a 4 x 4 rigid transform between two cameras.
"""

from __future__ import annotations

import numpy as np
import torch

MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0]).astype(np.float32)  # x -> -x in camera coordinates


def axis_angle_rotation(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """3 x 3 rotation by ``angle_rad`` (right-handed) about ``axis`` (any non-zero length), Rodrigues' formula."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    cross = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + np.sin(angle_rad) * cross + (1.0 - np.cos(angle_rad)) * (cross @ cross)


def rotation_angle(r_a: np.ndarray, r_b: np.ndarray) -> float:
    """Angle (radians) of the relative rotation r_a^T r_b, in [0, pi]."""
    cos = (np.trace(r_a.T @ r_b) - 1.0) / 2.0
    return float(np.arccos(np.clip(cos, -1.0, 1.0)))


def rigid(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4 x 4 float64 transform from a 3 x 3 rotation and a 3-vector translation (metres)."""
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = translation
    return pose


def intrinsics_matrix(intrinsics) -> np.ndarray:
    """(fx, fy, cx, cy) pixels -> 3 x 3 float64 K."""
    fx, fy, cx, cy = (float(x) for x in intrinsics)
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def unproject(u: np.ndarray, v: np.ndarray, z: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Camera-frame points ... x 3 (metres) of pixels (u, v) at z-depth ``z`` (metres) through 3 x 3 ``k``."""
    return np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], axis=-1)


def mirror_pose(pose: torch.Tensor) -> torch.Tensor:
    """... x 4 x 4 rigid transform between two cameras -> the same motion seen in both images mirrored."""
    flip = torch.as_tensor(MIRROR, dtype=pose.dtype, device=pose.device)
    return flip @ pose @ flip


def mirror_intrinsics(k: torch.Tensor, width: int) -> torch.Tensor:
    """... x 3 x 3 K of an image ``width`` pixels wide -> K of its mirror image (cx -> width - 1 - cx)."""
    k = k.clone()
    k[..., 0, 2] = width - 1 - k[..., 0, 2]
    return k
