"""View synthesis by inverse warping: reconstruct a target view from a source view and the target's depth.

Each target pixel p_t is lifted to X_t = D_t(p_t) K^-1 p_t (camera frame: x right, y down, z forward,
metres), moved into the source camera with the target-to-source pose, X_s = T X_t, projected to
p_s = pi(K X_s) and the source image is sampled bilinearly there (:mod:`depthcore.geometry.camera` for the
conventions). A reconstructed pixel is *valid* when its source point lies in front of the source camera
(z > :data:`MIN_SOURCE_DEPTH_M`) and every source pixel with a non-zero bilinear weight lies inside the image
and holds real content (``source_valid``). Geometry uses kornia (``depth_to_3d_v2``, ``transform_points``,
``project_points``, ``normalize_pixel_coordinates``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.geometry.camera import project_points
from kornia.geometry.conversions import normalize_pixel_coordinates
from kornia.geometry.depth import depth_to_3d_v2
from kornia.geometry.linalg import transform_points

from depthcore.geometry.frame import check_image

# Source-camera depth (metres) at or below which a point counts as behind the camera.
MIN_SOURCE_DEPTH_M = 1e-3
# A reconstructed pixel is valid when at least this share of its bilinear weight falls on valid source pixels.
MIN_VALID_WEIGHT = 1.0 - 1e-3


def inverse_warp(
    source: torch.Tensor,
    depth: torch.Tensor,
    pose: torch.Tensor,
    intrinsics: torch.Tensor,
    source_valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruct the target view by sampling the source view where the target's pixels land.

    source: B x C x H x W source image (any units). depth: B x 1 x H x W target z-depth, metres.
    pose: B x 4 x 4 rigid transform target-to-source (X_source = pose @ X_target), metres.
    intrinsics: B x 3 x 3 K in pixels, shared by both views. source_valid: B x 1 x H x W bool
    (source pixels that hold real content) or None (all valid).

    Returns (warped B x C x H x W, valid B x 1 x H x W bool). Invalid pixels of ``warped`` are 0.
    Differentiable with respect to ``depth`` (and ``source`` and ``pose``).
    """
    check_image("source", source)
    check_image("depth", depth, channels=1)
    batch, _, height, width = source.shape
    if depth.shape[0] != batch or depth.shape[-2:] != source.shape[-2:]:
        raise ValueError(f"depth {tuple(depth.shape)} does not match source {tuple(source.shape)}")
    dtype = source.dtype
    k = intrinsics.to(dtype)
    points = depth_to_3d_v2(depth[:, 0].to(dtype), k)  # B x H x W x 3, target frame
    points = transform_points(pose.to(dtype), points.reshape(batch, -1, 3))  # B x N x 3, source frame
    z = points[..., 2]
    in_front = z > MIN_SOURCE_DEPTH_M
    # Clamp before dividing so that points behind the camera give finite coordinates and gradients.
    safe = torch.cat([points[..., :2], z.clamp_min(MIN_SOURCE_DEPTH_M)[..., None]], dim=-1)
    pixels = project_points(safe, k[:, None])  # B x N x 2, (u, v)
    finite = torch.isfinite(pixels).all(dim=-1)
    pixels = torch.where(finite[..., None], pixels, torch.full_like(pixels, -2.0 * (height + width)))
    grid = normalize_pixel_coordinates(pixels, height, width).reshape(batch, height, width, 2)

    weight = torch.ones_like(source[:, :1]) if source_valid is None else source_valid.to(dtype)
    # Zero the invalid source pixels (NaN included) so that whatever they hold cannot leak into the reconstruction.
    source = torch.where(weight > 0, source, torch.zeros_like(source))
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    coverage = F.grid_sample(weight, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    valid = (coverage >= MIN_VALID_WEIGHT) & (in_front & finite).reshape(batch, 1, height, width)
    return warped * valid, valid
