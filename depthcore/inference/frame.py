"""New images into the model's frame, and predictions back to the image: the size policy of live prediction.

Reading (:func:`read_image`): any image Pillow opens, EXIF orientation applied, as 8-bit RGB with its true dynamic
range (:func:`to_rgb8` states the rule per mode); a large JPEG is decoded reduced (DCT scaling, 1/2 to 1/8) to no
less than the size the frame needs, so a 48 MP photo is never decoded whole.

Policy (cover, then centre crop): the image is resized with its aspect ratio kept by the smallest scale ``s`` at
which it covers the 480 x 640 NYUv2 frame, and the frame is its centre. A 4:3 photo keeps its whole field of view,
as a NYUv2 frame does: the metric scale a model learnt depends on the field of view, so stretching or padding
would bias it. A 640 x 480 image is its own frame, pixel for pixel. The model sees the frame's DepthCLIP crop
(rows 56:472, cols 60:604), as it saw the dataset's.

The canvas: the image at the frame's scale ``s``, on the frame's own pixel grid extended by ``mx`` whole columns
left and right and ``my`` whole rows above and below (the largest that stay inside the image), so the frame is
``canvas[my:my + 480, mx:mx + 640]``. Depth over the whole image (:mod:`depthcore.inference.predict`) tiles the
canvas with crop-sized windows (:func:`window_starts`), each shown to the model as the DepthCLIP crop of a virtual
frame, and blends them (:func:`blend_windows`).

Back to the image: every image pixel takes the bilinear value (border-clamped) of the crop- or canvas-space
depth at its position. With the crop alone, pixels outside the crop's footprint (the frame's margins, and whatever
the centre crop cut off) get 0 = no depth, the dataset's convention for invalid depth.

Coordinates are pixel centres at integers (column ``x``, row ``y``). With ``(x0, y0)`` the image position of the
frame's top-left pixel edge: ``frame_x = s (x + 0.5 - x0) - 0.5`` and likewise for rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from depthcore.errors import DepthcoreError
from depthcore.geometry.frame import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_WIDTH, crop_shape

UINT16_PER_UINT8 = 257  # 65535 / 255: a 16-bit level v is the 8-bit level v / 257
UINT16_LEVELS = 65536
ALPHA_BACKGROUND = 255  # transparent pixels are composited over white, as image viewers show them
FEATHER_PX = 32  # width (canvas pixels) of the linear ramps where windows meet: one layer4 cell of the crop
MAPPING_BLOCK_VALUES = 1 << 22  # values per row block when mapping depth to the image's pixels (16 MB float32)
MODES_AS_RGB = {"RGB", "L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"}  # Pillow's convert("RGB") is exact
MODES_WITH_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}
MODES_16BIT = {"I;16", "I;16L", "I;16B", "I;16N"}
ORIENTATION_TAG = 0x0112  # EXIF Orientation; values 5..8 swap width and height
ORIENTATIONS_SWAPPING_AXES = {5, 6, 7, 8}


class ImageError(DepthcoreError, ValueError):
    """An input file is not an image Pillow can read, or holds values this command cannot represent as RGB."""


def to_rgb8(image, path: Path | str) -> np.ndarray:
    """A loaded Pillow image -> H x W x 3 uint8 RGB with its dynamic range kept. Per mode:

    - RGB, L, 1, P (opaque), CMYK, YCbCr, LAB, HSV, RGBX: Pillow's conversion to RGB (1-bit: 0 / 255);
    - I;16, I;16L, I;16B, I;16N (16-bit greyscale): level ``v`` -> ``round(v / 257)`` (so an 8-bit image x 257 gives
      the 8-bit image back, exactly);
    - I (32-bit integers): read as 16-bit levels, as Pillow uses it for 16-bit files; values outside 0..65535 are
      refused (their range has no photometric meaning this command can know);
    - F (32-bit float): intensities in [0, 1] (the float image convention), ``round(255 v)``; values outside
      [0, 1] (HDR radiance, 0..255 floats) or not finite are refused: scaling by the image's own min or max would
      change its brightness from file to file;
    - RGBA, RGBa, LA, La, PA and P with transparency: composited over white (``ALPHA_BACKGROUND``);
    - any other mode is refused. ImageError (one line naming the file and the mode) when refused.
    """
    mode = image.mode
    if mode == "La":  # premultiplied: Pillow converts it to RGBA only through LA
        image = image.convert("LA")
    if mode == "P" and "transparency" in image.info:
        mode = "PA"
    if mode in MODES_WITH_ALPHA:
        rgba = np.asarray(image.convert("RGBA"))
        rgb, alpha = rgba[..., :3].astype(np.uint16), rgba[..., 3:].astype(np.uint16)
        # rgb a + 255 (255 - a) <= 65025: uint16 holds it; + 127 rounds the division by 255
        return ((rgb * alpha + ALPHA_BACKGROUND * (255 - alpha) + 127) // 255).astype(np.uint8)
    if mode in MODES_AS_RGB:
        return np.asarray(image if mode == "RGB" else image.convert("RGB"))
    if mode in MODES_16BIT or mode == "I":
        levels = np.asarray(image)
        if mode == "I" and levels.size and (levels.min() < 0 or levels.max() >= UINT16_LEVELS):
            raise ImageError(
                f"{path}: a 32-bit integer image (mode I) with values {levels.min()}..{levels.max()}, outside the "
                "16-bit range 0..65535 this command reads it in: save it as an 8- or 16-bit image"
            )
        grey = ((levels.astype(np.uint32) + UINT16_PER_UINT8 // 2) // UINT16_PER_UINT8).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode == "F":
        values = np.asarray(image)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise ImageError(
                f"{path}: a float image (mode F) with values {np.nanmin(values):g}..{np.nanmax(values):g}; "
                "float images are read as intensities in [0, 1]: rescale it to [0, 1] or save it as an 8- or "
                "16-bit image"
            )
        grey = np.rint(values.astype(np.float32) * 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    raise ImageError(f"{path}: image mode {mode} is not supported: save it as an 8-bit RGB image (PNG or JPEG)")


def read_image(path: Path | str, *, reduce: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """(h x w x 3 uint8 RGB, (H, W)): the image at ``path`` upright (EXIF orientation applied), read by
    :func:`to_rgb8`, and its own upright size H x W. With ``reduce``, a JPEG is decoded at the smallest DCT scale
    (1/2, 1/4, 1/8) that still covers the canvas of :class:`FrameMap` at least pixel for pixel, so ``h x w`` may be
    smaller than ``H x W`` (by the same factor on both axes, up to rounding); other formats are decoded whole.
    ImageError (one line naming the file) when it cannot be read."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            width, height = image.size  # as stored
            orientation = image.getexif().get(ORIENTATION_TAG, 1)
            if orientation in ORIENTATIONS_SWAPPING_AXES:
                height, width = width, height
            if reduce and image.format == "JPEG":
                scale = max(NYU_HEIGHT / height, NYU_WIDTH / width)
                need = (math.ceil(width * scale) + 2, math.ceil(height * scale) + 2)  # upright canvas, + a margin
                if orientation in ORIENTATIONS_SWAPPING_AXES:
                    need = need[::-1]
                image.draft(image.mode, need)
            image.load()
            upright = ImageOps.exif_transpose(image)
            return to_rgb8(upright, path), (height, width)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc


def load_image(path: Path | str) -> np.ndarray:
    """The image at ``path`` as H x W x 3 uint8 RGB at its own size, upright (:func:`read_image`)."""
    return read_image(path)[0]


def window_starts(length: int, window: int, feather: int = FEATHER_PX) -> list[int]:
    """Start indices of the fewest ``window``-long windows, evenly spaced (rounded), that cover ``length`` pixels
    with neighbours overlapping by at least ``2 feather`` pixels (so their ramps complete). [0] if they are equal."""
    if length < window:
        raise ValueError(f"a {length}-pixel axis is shorter than the {window}-pixel window")
    n = 1 + math.ceil((length - window) / (window - 2 * feather))
    return sorted({round(i * (length - window) / max(n - 1, 1)) for i in range(n)})


def _ramp(length: int, start: int, size: int, feather: int) -> np.ndarray:
    """``length`` float32 weights of a window [start, start + size) on an axis of ``length`` pixels: 0 outside,
    ``min(1, (d + 1) / feather)`` inside with ``d`` pixels to the window's nearer end, except that an end on the
    axis's end is not ramped (nothing lies beyond it)."""
    d = np.arange(length, dtype=np.float32)
    ramp = np.ones(length, dtype=np.float32)
    if start > 0:
        ramp = np.minimum(ramp, (d - start + 1) / feather)
    if start + size < length:
        ramp = np.minimum(ramp, (start + size - d) / feather)
    inside = (d >= start) & (d < start + size)
    return np.where(inside, np.clip(ramp, 0, 1), 0).astype(np.float32)


def blend_windows(
    canvas_shape: tuple[int, int],
    windows: list[tuple[int, int]],
    depths: np.ndarray,
    centre: tuple[int, int],
    centre_depth: np.ndarray,
    feather: int = FEATHER_PX,
) -> np.ndarray:
    """Hc x Wc float32 canvas depth (metres) from window predictions. ``windows``: (top, left) canvas positions of
    K windows of ``depths`` K x h x w (h x w: the crop's size) that cover the canvas; ``centre``: the position of
    ``centre_depth`` h x w (the frame's crop). The rule, per canvas pixel:

    ``out = a P_centre + (1 - a) sum_k w_k P_k / sum_k w_k``

    with ``w_k = r_k(row) r_k(col)``, ``r`` the window's linear ramp :func:`_ramp` (``min(1, (d + 1) / feather)``,
    ``d`` pixels to the window's nearer edge, edges on the canvas's edge not ramped), and ``a`` the centre window's
    ramp product the same way (0 outside it). So the centre prediction is kept unchanged inside its footprint
    farther than ``feather - 1`` pixels from its edges, and fades into the other windows' blend over the last
    ``feather`` pixels; where other windows overlap, each fades linearly into its neighbours."""
    height, width = canvas_shape
    h, w = centre_depth.shape
    total = np.zeros(canvas_shape, dtype=np.float32)
    weight = np.zeros(canvas_shape, dtype=np.float32)
    for (top, left), depth in zip(windows, depths, strict=True):
        rows, cols = _ramp(height, top, h, feather), _ramp(width, left, w, feather)
        wk = rows[top : top + h, None] * cols[None, left : left + w]
        total[top : top + h, left : left + w] += wk * depth
        weight[top : top + h, left : left + w] += wk
    if not (weight > 0).all():
        raise ValueError("the windows do not cover the canvas")
    others = total / weight
    top, left = centre
    alpha = _ramp(height, top, h, feather)[top : top + h, None] * _ramp(width, left, w, feather)[None, left : left + w]
    inner = others[top : top + h, left : left + w]
    others[top : top + h, left : left + w] = alpha * centre_depth + (1 - alpha) * inner
    return others


def _axis_map(n: int, coord: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, w1, inside) of ``n`` positions ``coord`` (float64, source pixel units) on a ``size``-long source
    axis: the bilinear neighbours and the weight of ``i1`` after clamping to [0, size - 1], and whether the position
    lies within the source's footprint [-0.5, size - 0.5]."""
    inside = (coord >= -0.5) & (coord <= size - 0.5)
    c = np.clip(coord, 0, size - 1)
    i0 = np.floor(c).astype(np.int64)
    i1 = np.minimum(i0 + 1, size - 1)
    return i0, i1, (c - i0).astype(np.float32), inside


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

    @property
    def margins(self) -> tuple[int, int]:
        """(my, mx): whole frame rows above (and below) and columns left (and right) of the frame that the canvas
        adds, the most that keep the canvas inside the image."""
        my = math.floor((self.scale * self.height - NYU_HEIGHT) / 2 + 1e-6)
        mx = math.floor((self.scale * self.width - NYU_WIDTH) / 2 + 1e-6)
        return max(my, 0), max(mx, 0)

    @property
    def canvas_shape(self) -> tuple[int, int]:
        """(Hc, Wc) of the canvas: the frame and its margins."""
        my, mx = self.margins
        return NYU_HEIGHT + 2 * my, NYU_WIDTH + 2 * mx

    def frame_from_image(self, x, y):
        """Frame coordinates of image coordinates (pixel centres at integers; arrays or floats)."""
        return self.scale * (x + 0.5 - self.x0) - 0.5, self.scale * (y + 0.5 - self.y0) - 0.5

    def image_from_frame(self, x, y):
        """Image coordinates of frame coordinates (the inverse of :meth:`frame_from_image`)."""
        return (x + 0.5) / self.scale + self.x0 - 0.5, (y + 0.5) / self.scale + self.y0 - 0.5

    def _resize(self, image: np.ndarray, top: float, left: float, rows: int, cols: int) -> np.ndarray:
        """``rows`` x ``cols`` frame pixels from frame row/column ``top``/``left`` (pixel edges) of ``image``, the
        H x W x 3 uint8 image or a reduced decode of it (:func:`read_image`): bicubic, antialiased when shrinking."""
        from PIL import Image

        fy, fx = image.shape[0] / self.height, image.shape[1] / self.width  # source pixels per image pixel
        box = (
            max(0.0, (self.x0 + left / self.scale) * fx),
            max(0.0, (self.y0 + top / self.scale) * fy),
            min(image.shape[1], (self.x0 + (left + cols) / self.scale) * fx),
            min(image.shape[0], (self.y0 + (top + rows) / self.scale) * fy),
        )
        return np.asarray(Image.fromarray(image).resize((cols, rows), Image.Resampling.BICUBIC, box=box))

    def to_frame(self, image: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 image (or a reduced decode of it) -> its 480 x 640 x 3 uint8 frame."""
        if self.is_identity and image.shape[:2] == (NYU_HEIGHT, NYU_WIDTH):
            return np.ascontiguousarray(image)
        return self._resize(image, 0, 0, NYU_HEIGHT, NYU_WIDTH)

    def to_canvas(self, image: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 image (or a reduced decode of it) -> the Hc x Wc x 3 uint8 canvas, whose frame part is
        exactly :meth:`to_frame`'s frame (resampled alone, as the crop-only prediction sees it)."""
        my, mx = self.margins
        if (my, mx) == (0, 0):
            return self.to_frame(image)
        height, width = self.canvas_shape
        canvas = self._resize(image, -my, -mx, height, width).copy()
        canvas[my : my + NYU_HEIGHT, mx : mx + NYU_WIDTH] = self.to_frame(image)
        return canvas

    def _place(self, depth: np.ndarray, top: int, left: int, *, zero_outside: bool) -> np.ndarray:
        """h x w depth placed at frame row/column ``top``/``left`` -> H x W float32 at the image's own pixels,
        bilinear (border-clamped), mapped a block of rows at a time (memory: the output and one block); with
        ``zero_outside``, 0 at pixels outside its footprint."""
        h, w = depth.shape
        columns, rows = np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64)
        fx, fy = self.frame_from_image(columns, rows)
        x0, x1, wx, inside_x = _axis_map(self.width, fx - left, w)
        y0, y1, wy, inside_y = _axis_map(self.height, fy - top, h)
        depth = np.asarray(depth, dtype=np.float32)
        out = np.empty((self.height, self.width), dtype=np.float32)
        block = max(1, MAPPING_BLOCK_VALUES // self.width)
        for r in range(0, self.height, block):
            rows = slice(r, r + block)
            by = wy[rows, None]
            lines = depth[y0[rows]] * (1 - by) + depth[y1[rows]] * by  # block x w
            values = lines[:, x0] * (1 - wx) + lines[:, x1] * wx
            if zero_outside:
                values *= inside_y[rows, None] & inside_x
            out[rows] = values
        return out

    def to_image(self, crop_depth: torch.Tensor, crop: tuple[int, int, int, int] = DEPTHCLIP_CROP) -> np.ndarray:
        """Crop-space depth h x w (metres, the prediction at ``crop`` of the frame) -> H x W float32 at the
        image's own pixels: bilinear inside the crop's footprint, 0 outside."""
        top, _, left, _ = crop
        h, w = crop_shape(crop)
        if tuple(crop_depth.shape[-2:]) != (h, w):
            raise ValueError(f"expected a {h} x {w} crop-space prediction, got {tuple(crop_depth.shape)}")
        return self._place(torch.as_tensor(crop_depth).reshape(h, w).cpu().numpy(), top, left, zero_outside=True)

    def canvas_to_image(self, canvas_depth: np.ndarray) -> np.ndarray:
        """Hc x Wc canvas depth (metres) -> H x W float32 at the image's own pixels, bilinear; the canvas covers the
        image but for less than one frame pixel at its edges, where the nearest canvas value is taken."""
        if tuple(canvas_depth.shape) != self.canvas_shape:
            raise ValueError(f"expected a {self.canvas_shape} canvas depth, got {tuple(canvas_depth.shape)}")
        my, mx = self.margins
        return self._place(canvas_depth, -my, -mx, zero_outside=False)

    def intrinsics(self, frame_intrinsics: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in the image's pixels of a camera with ``frame_intrinsics`` in the frame's pixels."""
        fx, fy, cx, cy = frame_intrinsics
        ix, iy = self.image_from_frame(cx, cy)
        return fx / self.scale, fy / self.scale, float(ix), float(iy)
