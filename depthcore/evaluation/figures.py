"""Depth figures: one row per image, columns RGB | ground truth | one column per named prediction.

All depth panels share one colour scale (metres, 0 .. the largest valid ground-truth depth shown,
or ``max_depth``); invalid ground truth (0) is drawn black. Saved as PNG so ``dvc plots`` can show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from depthcore.io import atomic_path

DEPTH_CMAP = "magma_r"  # near = bright, far = dark
PANEL_INCHES = 2.6
DPI = 100


def save_depth_figure(
    path: Path | str,
    *,
    rgb: np.ndarray,
    gt: np.ndarray,
    predictions: Sequence[tuple[str, np.ndarray]],
    titles: Sequence[str] | None = None,
    max_depth: float | None = None,
) -> Path:
    """Write the figure to ``path`` (PNG) and return the path.

    rgb: n x H x W x 3 uint8; gt: n x H x W metres (0 = invalid); predictions: (column name,
    n x H x W metres) pairs in display order; titles: optional n row labels (e.g. image index);
    max_depth: top of the shared colour scale (default: the largest finite ground truth shown).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb, gt = np.asarray(rgb), np.asarray(gt)
    n = rgb.shape[0]
    if n == 0:
        raise ValueError("a depth figure needs at least one image")
    for name, pred in predictions:
        if np.asarray(pred).shape != gt.shape:
            raise ValueError(f"prediction column {name!r} has shape {np.asarray(pred).shape}, ground truth {gt.shape}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} row titles for {n} images")
    valid = gt[np.isfinite(gt) & (gt > 0)]
    vmax = float(max_depth) if max_depth is not None else (float(valid.max()) if valid.size else 1.0)
    columns = [("RGB", None), ("ground truth", gt), *[(name, np.asarray(pred)) for name, pred in predictions]]
    height, width = gt.shape[1:]
    fig, axes = plt.subplots(
        n, len(columns), squeeze=False, figsize=(PANEL_INCHES * len(columns), PANEL_INCHES * n * height / width + 0.6)
    )
    cmap = matplotlib.colormaps[DEPTH_CMAP].with_extremes(bad="black")
    image = None
    for row in range(n):
        for col, (name, depth) in enumerate(columns):
            ax = axes[row, col]
            if depth is None:
                ax.imshow(rgb[row])
            else:
                shown = np.ma.masked_less_equal(depth[row], 0.0)
                image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0 and titles is not None:
                ax.set_ylabel(titles[row], fontsize=8)
    fig.tight_layout()
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="depth (m)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)
    return Path(path)
