"""New images into the model's frame, and predictions back to the image: the size policy of live prediction.

Policy (cover, then centre crop): the image, its EXIF orientation applied and converted to RGB, is resized with
its aspect ratio kept by the smallest scale ``s`` at which it covers the 480 x 640 NYUv2 frame, and the frame is
its centre. A 4:3 photo keeps its whole field of view, as a NYUv2 frame does: the metric scale a model learnt
depends on the field of view, so stretching or padding would bias it. A 640 x 480 image is its own frame, pixel
for pixel. The model sees the frame's DepthCLIP crop (rows 56:472, cols 60:604), as it saw the dataset's.

Back to the image: every image pixel takes the bilinear value of the 416 x 544 crop-space prediction at its
position; pixels outside the crop's footprint (the frame's margins, and whatever the centre crop cut off) get
0 = no depth, the dataset's convention for invalid depth.

Coordinates are pixel centres at integers (column ``x``, row ``y``). With ``(x0, y0)`` the image position of the
frame's top-left pixel edge: ``frame_x = s (x + 0.5 - x0) - 0.5`` and likewise for rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from depthcore.errors import DepthcoreError
from depthcore.geometry.frame import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_WIDTH, crop_shape


class ImageError(DepthcoreError, ValueError):
    """An input file is not an image Pillow can read."""


def load_image(path: Path | str) -> np.ndarray:
    """The image at ``path`` as H x W x 3 uint8 RGB, upright (EXIF orientation applied); any format Pillow
    reads. ImageError (one line) when it cannot be read."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)
            return np.asarray(upright.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class FrameMap:
    """Where the 480 x 640 frame lies in an image of ``height`` x ``width`` pixels: ``scale`` frame pixels per
    image pixel, ``x0`` / ``y0`` the image position of the frame's top-left pixel edge."""

    height: int
    width: int
    scale: float
    x0: float
    y0: float

    @classmethod
    def for_image(cls, height: int, width: int) -> FrameMap:
        """The cover-then-centre-crop map of an image of ``height`` x ``width``."""
        scale = max(NYU_HEIGHT / height, NYU_WIDTH / width)
        return cls(height, width, scale, (width - NYU_WIDTH / scale) / 2, (height - NYU_HEIGHT / scale) / 2)

    @property
    def is_identity(self) -> bool:
        """Whether the image is its own frame (a 640 x 480 image)."""
        return (self.height, self.width) == (NYU_HEIGHT, NYU_WIDTH)

    def frame_from_image(self, x, y):
        """Frame coordinates of image coordinates (pixel centres at integers; arrays or floats)."""
        return self.scale * (x + 0.5 - self.x0) - 0.5, self.scale * (y + 0.5 - self.y0) - 0.5

    def image_from_frame(self, x, y):
        """Image coordinates of frame coordinates (the inverse of :meth:`frame_from_image`)."""
        return (x + 0.5) / self.scale + self.x0 - 0.5, (y + 0.5) / self.scale + self.y0 - 0.5

    def to_frame(self, image: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 image -> its 480 x 640 x 3 uint8 frame (bicubic, antialiased when shrinking)."""
        if self.is_identity:
            return np.ascontiguousarray(image)
        from PIL import Image

        box = (self.x0, self.y0, self.x0 + NYU_WIDTH / self.scale, self.y0 + NYU_HEIGHT / self.scale)
        resized = Image.fromarray(image).resize((NYU_WIDTH, NYU_HEIGHT), Image.Resampling.BICUBIC, box=box)
        return np.asarray(resized)

    def to_image(self, crop_depth: torch.Tensor, crop: tuple[int, int, int, int] = DEPTHCLIP_CROP) -> np.ndarray:
        """Crop-space depth h x w (metres, the prediction at ``crop`` of the frame) -> H x W float32 at the
        image's own pixels: bilinear inside the crop's footprint, 0 outside."""
        top, _, left, _ = crop
        h, w = crop_shape(crop)
        if tuple(crop_depth.shape[-2:]) != (h, w):
            raise ValueError(f"expected a {h} x {w} crop-space prediction, got {tuple(crop_depth.shape)}")
        ys, xs = torch.meshgrid(
            torch.arange(self.height, dtype=torch.float64), torch.arange(self.width, dtype=torch.float64), indexing="ij"
        )
        fx, fy = self.frame_from_image(xs, ys)
        cx, cy = fx - left, fy - top  # crop pixel coordinates
        inside = (cx >= -0.5) & (cx <= w - 0.5) & (cy >= -0.5) & (cy <= h - 0.5)
        grid = torch.stack([2 * cx / (w - 1) - 1, 2 * cy / (h - 1) - 1], dim=-1)[None].float()
        source = crop_depth.reshape(1, 1, h, w).float().cpu()
        depth = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, 0]
        return torch.where(inside, depth, torch.zeros_like(depth)).numpy().astype(np.float32)

    def intrinsics(self, frame_intrinsics: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in the image's pixels of a camera with ``frame_intrinsics`` in the frame's pixels."""
        fx, fy, cx, cy = frame_intrinsics
        ix, iy = self.image_from_frame(cx, cy)
        return fx / self.scale, fy / self.scale, float(ix), float(iy)
