"""``depthcore predict``: depth for image files, batched, with a progress bar (the command is :mod:`depthcore.cli`).

Inputs are files, or folders whose files with an extension Pillow reads are taken (not recursively), in sorted
order; in a folder, ``<stem>_mm.png`` and ``<stem>_color.png`` beside a ``<stem>.npy`` are this command's own
outputs, not inputs. Each image goes through the size policy of :mod:`depthcore.inference.frame`, the live model
of :mod:`depthcore.inference.live`, and the writers of :mod:`depthcore.inference.outputs`.

Depth over the whole image (the default): the canvas (the image at the frame's scale) is tiled with crop-sized
windows, the fewest evenly spaced ones that cover it (:func:`~depthcore.inference.frame.window_starts`), plus the
frame's own crop (the centre window). Each window is shown to the model as the DepthCLIP crop of a virtual 480 x
640 frame: the canvas around it, mirrored (reflect padding) where the canvas ends; the model reads only the crop
(CLIP and the adapters see the crop; the zero-shot map is computed from the crop's features; only the segmenter
looks at the whole frame, and finds the canvas there where it exists). The windows are blended by
:func:`~depthcore.inference.frame.blend_windows`: the centre window's prediction, the crop-only one, is kept
unchanged farther than ``FEATHER_PX - 1`` pixels inside the crop. ``crop_only``: the crop alone, 0 = no depth
elsewhere (one window per image instead of 5 for a 4:3 photo).

An image whose outputs all exist is skipped unless ``overwrite``; an unreadable one is skipped and reported, and the
others are still written. One image's outputs are written all or none (temporary names, renamed together). Two
inputs with the same stem would write the same files: refused before any work.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from depthcore.errors import DepthcoreError
from depthcore.geometry.frame import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_INTRINSICS, NYU_WIDTH, crop_shape
from depthcore.inference.frame import FrameMap, ImageError, blend_windows, read_image, window_starts
from depthcore.inference.live import LivePredictor
from depthcore.inference.outputs import (
    COLORMAP,
    OUTPUT_SUFFIXES,
    output_paths,
    write_color,
    write_npy,
    write_ply,
    write_png16,
)

STAGING_SUFFIX = ".partial"  # one image's outputs are written as .<name>.partial, then renamed together


@dataclass
class Summary:
    """What a prediction run did: inputs written, skipped (outputs existed), failed (path -> reason)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputOptions:
    """What to write: ``ply`` point clouds with ``intrinsics`` (fx, fy, cx, cy in the image's pixels; None:
    NYUv2's, scaled to each image by the size policy), colourised with ``cmap``, a colour bar if ``colorbar``."""

    ply: bool = False
    intrinsics: tuple[float, float, float, float] | None = None
    cmap: str = COLORMAP
    colorbar: bool = False
    overwrite: bool = False
    crop_only: bool = False


def check_output_folder(out_dir: Path | str) -> None:
    """DepthcoreError (one line) unless ``out_dir`` is a folder this process can write in, or can be created in
    one: checked with a probe file (permissions alone do not tell: read-only mounts, ACLs)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DepthcoreError(f"--out {out_dir} is a file, not a folder: name a folder (it is created if missing)")
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DepthcoreError(f"--out {out_dir} cannot be created: {existing} is a file; name another folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".depthcore-probe-"):
            pass
    except OSError as exc:
        raise DepthcoreError(
            f"--out {out_dir}: cannot write in {existing} ({exc.strerror or exc}): name a folder you can write to"
        ) from None


def is_own_output(path: Path) -> bool:
    """Whether ``path`` is an image this command wrote: ``<stem>_mm.png`` or ``<stem>_color.png`` beside
    ``<stem>.npy``."""
    for kind in ("mm", "color"):
        suffix = OUTPUT_SUFFIXES[kind]
        stem = path.name[: -len(suffix)]
        if path.name.endswith(suffix) and (path.parent / f"{stem}{OUTPUT_SUFFIXES['npy']}").is_file():
            return True
    return False


def image_files(inputs: Iterable[Path | str]) -> list[Path]:
    """The image files ``inputs`` name: files as given, folders' image files sorted (without this command's own
    outputs, :func:`is_own_output`). A path that does not exist is kept (and reported as failed when read), so one
    typo does not stop the rest."""
    from PIL import Image

    extensions = {ext.lower() for ext in Image.registered_extensions()}
    files: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            files += sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in extensions and not is_own_output(p)
            )
        else:
            files.append(path)
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems and stems[path.stem] != path:
            raise DepthcoreError(
                f"{stems[path.stem]} and {path} would write the same outputs ({path.stem}.*): predict them into "
                "different --out folders"
            )
        stems[path.stem] = path
    return list(dict.fromkeys(files))


def predict_images(
    predictor: LivePredictor,
    inputs: Sequence[Path | str],
    out_dir: Path | str,
    *,
    options: OutputOptions = OutputOptions(),
    batch_size: int = 4,
    progress: bool = True,
) -> Summary:
    """Predict every image of ``inputs`` into ``out_dir``; returns what was written, skipped and failed.
    ``batch_size``: windows (virtual frames) per forward pass."""
    out_dir = Path(out_dir)
    check_output_folder(out_dir)
    summary = Summary()
    todo = []
    for path in image_files(inputs):
        if not options.overwrite and all(
            p.exists() for p in output_paths(out_dir, path.stem, ply=options.ply).values()
        ):
            summary.skipped.append(path)
        else:
            todo.append(path)
    batch: list[tuple[Path, np.ndarray, FrameMap]] = []
    with tqdm(total=len(todo), unit="img", desc=f"predict ({predictor.name})", disable=not progress) as bar:
        for i, path in enumerate(todo):
            try:  # a reduced decode where the full-size pixels are not needed (the point cloud's colours)
                image, (height, width) = read_image(path, reduce=not options.ply)
            except ImageError as exc:
                summary.failed[path] = str(exc)
                bar.update(1)
            else:
                batch.append((path, image, FrameMap.for_image(height, width)))
            if batch and (len(batch) == batch_size or i == len(todo) - 1):
                _predict_batch(predictor, batch, out_dir, options, batch_size)
                summary.written += [path for path, _, _ in batch]
                bar.update(len(batch))
                batch = []
    return summary


def virtual_frames(canvas: np.ndarray, windows: list[tuple[int, int]]) -> np.ndarray:
    """K x 480 x 640 x 3 uint8 frames whose DepthCLIP crop is the canvas window at (top, left) of ``windows``
    (canvas pixels): the canvas around the window, mirrored (reflect) where the canvas ends."""
    top, bottom, left, right = DEPTHCLIP_CROP
    padded = np.pad(canvas, ((top, NYU_HEIGHT - bottom), (left, NYU_WIDTH - right), (0, 0)), mode="reflect")
    return np.stack([padded[t : t + NYU_HEIGHT, c : c + NYU_WIDTH] for t, c in windows])


def canvas_windows(fmap: FrameMap) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """(the centre window, the covering windows): (top, left) canvas positions of crop-sized windows."""
    (height, width), (my, mx) = fmap.canvas_shape, fmap.margins
    h, w = crop_shape(DEPTHCLIP_CROP)
    centre = (my + DEPTHCLIP_CROP[0], mx + DEPTHCLIP_CROP[2])
    return centre, [(t, c) for t in window_starts(height, h) for c in window_starts(width, w)]


def full_depth(predictor: LivePredictor, images: list[tuple[np.ndarray, FrameMap]], batch_size: int) -> list:
    """H x W float32 depth (metres) over the whole of each (image, map) of ``images``: its canvas windows predicted
    ``batch_size`` at a time, blended (:func:`~depthcore.inference.frame.blend_windows`), mapped to its pixels."""
    frames, plans, first = [], [], 0
    for image, fmap in images:
        centre, windows = canvas_windows(fmap)
        unique = list(dict.fromkeys([centre, *windows]))
        plans.append((first, unique, centre, windows))
        frames.append(virtual_frames(fmap.to_canvas(image), unique))
        first += len(unique)
    frames = np.concatenate(frames)
    depth = np.concatenate(
        [predictor.predict(frames[i : i + batch_size])[:, 0].numpy() for i in range(0, len(frames), batch_size)]
    )
    out = []
    for (_, fmap), (first, unique, centre, windows) in zip(images, plans, strict=True):
        by_window = dict(zip(unique, depth[first : first + len(unique)], strict=True))
        canvas_depth = blend_windows(
            fmap.canvas_shape, windows, np.stack([by_window[p] for p in windows]), centre, by_window[centre]
        )
        out.append(fmap.canvas_to_image(canvas_depth))
    return out


def crop_depth(predictor: LivePredictor, images: list[tuple[np.ndarray, FrameMap]], batch_size: int) -> list:
    """H x W float32 depth (metres) of each (image, map) of ``images`` from its frame's crop alone, 0 elsewhere."""
    frames = np.stack([fmap.to_frame(image) for image, fmap in images])
    depth = torch.cat([predictor.predict(frames[i : i + batch_size]) for i in range(0, len(frames), batch_size)])
    return [fmap.to_image(d[0]) for (_, fmap), d in zip(images, depth, strict=True)]


def _predict_batch(
    predictor: LivePredictor,
    batch: list[tuple[Path, np.ndarray, FrameMap]],
    out_dir: Path,
    options: OutputOptions,
    batch_size: int,
) -> None:
    """Predict one batch of loaded images and write each one's outputs."""
    images = [(image, fmap) for _, image, fmap in batch]
    depths = (crop_depth if options.crop_only else full_depth)(predictor, images, batch_size)
    for (path, image, fmap), depth in zip(batch, depths, strict=True):
        write_outputs(
            output_paths(out_dir, path.stem, ply=options.ply),
            depth,
            image,
            options.intrinsics or fmap.intrinsics(NYU_INTRINSICS),
            options,
        )


def write_outputs(
    files: dict[str, Path],
    depth: np.ndarray,
    image: np.ndarray,
    intrinsics: tuple[float, float, float, float],
    options: OutputOptions,
) -> None:
    """Write one image's outputs (``files``: kind -> path) all or none: each to a temporary name beside it, then
    renamed together; on any failure (or Ctrl-C) the temporary files and those already renamed are removed."""
    staged = {kind: path.with_name(f".{path.name}{STAGING_SUFFIX}") for kind, path in files.items()}
    renamed: list[Path] = []
    try:
        write_npy(staged["npy"], depth)
        write_png16(staged["mm"], depth)
        write_color(staged["color"], depth, cmap=options.cmap, colorbar=options.colorbar)
        if "ply" in files:
            write_ply(staged["ply"], depth, image, intrinsics)
        for kind, path in files.items():
            os.replace(staged[kind], path)
            renamed.append(path)
    except BaseException:
        for path in [*staged.values(), *renamed]:
            path.unlink(missing_ok=True)
        raise
