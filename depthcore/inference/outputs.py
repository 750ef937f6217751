"""What ``depthcore predict`` writes per image, each file atomically, named after the input's stem:

- ``<stem>.npy``: H x W float32 depth in metres, 0 = no depth (the image's own size);
- ``<stem>_mm.png``: the same as 16-bit greyscale PNG in millimetres (round(m x 1000), at most 65535), 0 = no depth;
- ``<stem>_color.png``: the depth colourised (matplotlib colormap over the valid range, no depth black); with a
  colour bar in metres beside it if asked;
- ``<stem>.ply`` (optional): binary little-endian PLY of the valid pixels as coloured points, camera coordinates
  in metres (x right, y down, z forward: OpenCV's convention), from the given pinhole intrinsics.

Each converts a block of rows at a time (``BLOCK_VALUES`` values), so that a 48 MP image costs its outputs' own
bytes and a few blocks, not float64 copies of the whole image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depthcore.geometry.camera import intrinsics_matrix, unproject
from depthcore.io import atomic_path

COLORMAP = "turbo"  # no black in it: black marks the pixels without depth
MM_PER_M = 1000.0
PNG16_MAX = np.iinfo(np.uint16).max  # 65.535 m
OUTPUT_SUFFIXES = {"npy": ".npy", "mm": "_mm.png", "color": "_color.png", "ply": ".ply"}
BLOCK_VALUES = 1 << 22  # values per block of rows when converting depth (16 MB of float32)
PLY_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def output_paths(out_dir: Path, stem: str, *, ply: bool) -> dict[str, Path]:
    """The files written for an input of stem ``stem``: kind -> path."""
    kinds = [kind for kind in OUTPUT_SUFFIXES if ply or kind != "ply"]
    return {kind: out_dir / f"{stem}{OUTPUT_SUFFIXES[kind]}" for kind in kinds}


def row_blocks(depth: np.ndarray) -> list[slice]:
    """Slices of ``depth``'s rows (its first axis), ``BLOCK_VALUES`` values or one row each."""
    rows = max(1, BLOCK_VALUES // max(1, int(np.prod(depth.shape[1:]))))
    return [slice(r, r + rows) for r in range(0, depth.shape[0], rows)]


def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """... metres -> the same shape uint16 millimetres (rounded half to even, clipped to 65535; 0 stays 0)."""
    depth = np.asarray(depth)
    out = np.empty(depth.shape, dtype=np.uint16)
    for rows in row_blocks(depth) if depth.ndim else [...]:
        out[rows] = np.clip(np.rint(depth[rows].astype(np.float64) * MM_PER_M), 0, PNG16_MAX)
    return out


def write_npy(path: Path, depth: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(depth, dtype=np.float32))


def write_png16(path: Path, depth: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(depth_to_mm(depth)).save(tmp, format="PNG")


def colourise(depth: np.ndarray, cmap: str) -> tuple[np.ndarray, float, float]:
    """H x W metres -> (H x W x 3 uint8, vmin, vmax): ``cmap`` over the valid depths' range, no depth black."""
    valid = depth > 0
    vmin, vmax = (0.0, 1.0)
    if valid.any():
        vmin = float(np.min(depth, where=valid, initial=np.inf))
        vmax = float(np.max(depth, where=valid, initial=-np.inf))
    rgb = np.empty((*depth.shape, 3), dtype=np.uint8)
    for rows in row_blocks(depth):
        rgb[rows] = _colours((depth[rows] - vmin) / max(vmax - vmin, 1e-6), cmap)
        rgb[rows][~valid[rows]] = 0
    return rgb, vmin, vmax


def _colours(fraction: np.ndarray, cmap: str) -> np.ndarray:
    """Values in [0, 1] (clipped) -> uint8 RGB of ``cmap``: its lookup table indexed as matplotlib indexes it
    (``floor(N x)``, 1 -> N - 1), without matplotlib's float64 RGBA copy of the whole array."""
    import matplotlib

    colormap = matplotlib.colormaps[cmap]
    table = (colormap(np.arange(colormap.N))[:, :3] * 255).round().astype(np.uint8)
    index = np.clip(fraction, 0, 1) * colormap.N  # in the fraction's own dtype, as matplotlib computes it
    return table[np.clip(index.astype(np.int64), 0, colormap.N - 1)]


def with_colour_bar(rgb: np.ndarray, vmin: float, vmax: float, cmap: str, *, ticks: int = 5) -> np.ndarray:
    """The colourised image (H x W x 3, kept pixel for pixel) with a labelled colour bar in metres on its right."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = rgb.shape[:2]
    font = ImageFont.load_default(size=max(10, height // 32))
    bar, pad = max(12, width // 40), max(6, width // 80)
    labels = [f"{value:.2f} m" for value in np.linspace(vmax, vmin, ticks)]
    label_width = max(int(font.getlength(label)) for label in labels)
    canvas = Image.new("RGB", (width + 3 * pad + bar + label_width, height), "white")
    canvas.paste(Image.fromarray(rgb), (0, 0))
    top, bottom = pad, height - pad  # far (vmax) at the top
    gradient = _colours(np.linspace(1, 0, bottom - top)[:, None].repeat(bar, axis=1), cmap)
    canvas.paste(Image.fromarray(gradient), (width + pad, top))
    draw = ImageDraw.Draw(canvas)
    for label, y in zip(labels, np.linspace(top, bottom - 1, ticks), strict=True):
        draw.line([(width + pad + bar, y), (width + 1.5 * pad + bar, y)], fill="black")
        draw.text((width + 2 * pad + bar, y), label, fill="black", font=font, anchor="lm")
    return np.asarray(canvas)


def write_color(path: Path, depth: np.ndarray, *, cmap: str, colorbar: bool) -> None:
    """The colourised depth at the image's size; with ``colorbar``, a labelled colour bar in metres beside it."""
    from PIL import Image

    rgb, vmin, vmax = colourise(depth, cmap)
    with atomic_path(path) as tmp:
        Image.fromarray(with_colour_bar(rgb, vmin, vmax, cmap) if colorbar else rgb).save(tmp, format="PNG")


def backproject(
    depth: np.ndarray, intrinsics: tuple[float, float, float, float], *, first_row: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(N x 3 float32 points in metres, N x 2 int pixel (row, col)) of the pixels with depth > 0; ``depth`` is
    h x w metres, the image's rows from ``first_row`` on (pixel rows count from the image's top)."""
    rows, cols = np.nonzero(depth > 0)
    depth_values = depth[rows, cols]
    rows = rows + first_row
    points = unproject(cols, rows, depth_values.astype(np.float64), intrinsics_matrix(intrinsics))
    return points.astype(np.float32), np.stack([rows, cols], axis=1)


def write_ply(path: Path, depth: np.ndarray, rgb: np.ndarray, intrinsics: tuple[float, float, float, float]) -> None:
    """The valid pixels of ``depth`` (H x W metres) as points coloured by ``rgb`` (H x W x 3 uint8), written a
    block of rows at a time."""
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment depthcore predict: camera coordinates, metres\n"
        f"element vertex {int(np.count_nonzero(depth > 0))}\n"
        + "".join(f"property {'float' if name in ('x', 'y', 'z') else 'uchar'} {name}\n" for name in PLY_VERTEX.names)
        + "end_header\n"
    )
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header.encode("ascii"))
        for rows in row_blocks(depth):
            points, pixels = backproject(depth[rows], intrinsics, first_row=rows.start)
            vertices = np.empty(len(points), dtype=PLY_VERTEX)
            vertices["x"], vertices["y"], vertices["z"] = points.T
            colours = rgb[pixels[:, 0], pixels[:, 1]]
            vertices["red"], vertices["green"], vertices["blue"] = colours.T
            fh.write(vertices.tobytes())


def read_ply(path: Path) -> np.ndarray:
    """The vertices (:data:`PLY_VERTEX` records) of a PLY file :func:`write_ply` wrote."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return np.frombuffer(data[end:], dtype=PLY_VERTEX)
