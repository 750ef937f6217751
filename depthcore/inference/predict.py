"""``depthcore predict``: depth for image files, batched, with a progress bar (the command is :mod:`depthcore.cli`).

Inputs are files, or folders whose files with an extension Pillow reads are taken (not recursively), in sorted
order. Each image goes through the size policy of :mod:`depthcore.inference.frame`, the live model of
:mod:`depthcore.inference.live`, and the writers of :mod:`depthcore.inference.outputs`. An image whose outputs
all exist is skipped unless ``overwrite``; an unreadable one is skipped and reported, and the others are still
written. Two inputs with the same stem would write the same files: refused before any work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from depthcore.errors import DepthcoreError
from depthcore.geometry.frame import NYU_INTRINSICS
from depthcore.inference.frame import FrameMap, ImageError, load_image
from depthcore.inference.live import LivePredictor
from depthcore.inference.outputs import COLORMAP, output_paths, write_color, write_npy, write_ply, write_png16


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


def image_files(inputs: Iterable[Path | str]) -> list[Path]:
    """The image files ``inputs`` name: files as given, folders' image files sorted. A path that does not exist is
    kept (and reported as failed when read), so one typo does not stop the rest."""
    from PIL import Image

    extensions = {ext.lower() for ext in Image.registered_extensions()}
    files: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in extensions)
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
    """Predict every image of ``inputs`` into ``out_dir``; returns what was written, skipped and failed."""
    out_dir = Path(out_dir)
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
            try:
                image = load_image(path)
            except ImageError as exc:
                summary.failed[path] = str(exc)
                bar.update(1)
            else:
                batch.append((path, image, FrameMap.for_image(*image.shape[:2])))
            if batch and (len(batch) == batch_size or i == len(todo) - 1):
                _predict_batch(predictor, batch, out_dir, options)
                summary.written += [path for path, _, _ in batch]
                bar.update(len(batch))
                batch = []
    return summary


def _predict_batch(
    predictor: LivePredictor, batch: list[tuple[Path, np.ndarray, FrameMap]], out_dir: Path, options: OutputOptions
) -> None:
    """Predict one batch of loaded images and write each one's outputs."""
    depth = predictor.predict(np.stack([fmap.to_frame(image) for _, image, fmap in batch]))
    for (path, image, fmap), crop_depth in zip(batch, depth, strict=True):
        out = fmap.to_image(crop_depth[0])
        files = output_paths(out_dir, path.stem, ply=options.ply)
        write_npy(files["npy"], out)
        write_png16(files["mm"], out)
        write_color(files["color"], out, cmap=options.cmap, colorbar=options.colorbar)
        if options.ply:
            write_ply(files["ply"], out, image, options.intrinsics or fmap.intrinsics(NYU_INTRINSICS))
