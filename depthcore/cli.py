"""The ``depthcore`` command (installed with the package; also ``python -m depthcore``).

``depthcore predict MODEL IMAGE_OR_DIR... --out DIR``: metric depth for your own images. ``MODEL`` is a checkpoint
the pipeline wrote (``models/model.safetensors``, or a grid run's under ``models/paper/``) or ``zeroshot`` (DepthCLIP
with the configured CLIP). Everything the model read from the cache is computed live from the weights and
artifacts the pipeline fetched and built (``--backbone-weights``, ``--head``, ``--sam-weights``: by default the
pipeline's own locations, relative to the current folder). See :mod:`depthcore.inference`.

``depthcore bridge dinov2 --backbone B --head H (--file PATH | --download)``: DINOv2's released NYU depth head
evaluated on the dataset store's test split by depthcore's metrics (:mod:`depthcore.bridge`, docs/bridge.md).

Exit status: 0 when every image was written (or skipped because its outputs exist), 1 when some image could not
be read (listed at the end; the others are written), 2 on an error that stops the run (one line on stderr; the
options, the output folder and the inputs are checked before the model loads), 130 on Ctrl-C (one line; every
image written so far is complete, and a rerun skips it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from depthcore.bridge import cli as bridge_cli
from depthcore.config.paths import Paths
from depthcore.errors import DepthcoreError
from depthcore.inference.outputs import COLORMAP

EXIT_IMAGES_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's status for a command stopped by Ctrl-C


def _device(name: str):
    """The torch device ``--device`` names; a requested GPU that torch cannot use is an error, not the CPU."""
    import torch

    from depthcore.device import default_device

    device = default_device(None if name == "auto" else name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DepthcoreError(
            f"--device {name}: torch {torch.__version__} cannot use a GPU here (torch.cuda.is_available() is False: "
            "no NVIDIA driver, a driver too old for this torch build, or a CPU-only build); use --device cpu"
        )
    return device


def parser() -> argparse.ArgumentParser:
    paths = Paths()
    top = argparse.ArgumentParser(prog="depthcore", description="depthcore: foundation models and monocular depth")
    commands = top.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "predict",
        help="metric depth for your own images",
        description="Depth in metres for image files from a trained checkpoint or DepthCLIP zero-shot. Each image "
        "is resized to cover the 480 x 640 NYUv2 frame (aspect ratio kept); the model predicts the frame's crop and "
        "overlapping crop-sized windows at the same scale that cover the rest of the image, blended, and the depth "
        "is mapped back to the image's own pixels (--crop-only: the frame's crop alone, 0 elsewhere).",
    )
    p.add_argument("model", help="a checkpoint (.safetensors) the pipeline wrote, or 'zeroshot'")
    p.add_argument("inputs", nargs="+", type=Path, help="image files, or folders of them (not recursive)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--device", default="auto", help="auto (a GPU when torch can use one) | cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=int, default=4, help="windows (crop-sized views) per forward pass (default 4)")
    p.add_argument(
        "--crop-only",
        action="store_true",
        help="depth only where the model's crop of the centre frame reaches (as the evaluate stage), 0 elsewhere: "
        "one window per image instead of 5 for a 4:3 photo",
    )
    p.add_argument("--overwrite", action="store_true", help="redo images whose outputs exist (default: skip them)")
    p.add_argument("--ply", action="store_true", help="also write a coloured point cloud <stem>.ply")
    for name in ("fx", "fy", "cx", "cy"):
        p.add_argument(f"--{name}", type=float, help="pinhole intrinsics for --ply, image pixels (give all four; "
                       "default: NYUv2's camera scaled to the image)")  # fmt: skip
    p.add_argument("--colorbar", action="store_true", help="draw a colour bar in metres beside the colourised depth")
    p.add_argument("--cmap", default=COLORMAP, help=f"matplotlib colormap of the colourised depth (default {COLORMAP})")
    p.add_argument(
        "--backbone-weights",
        "--clip-weights",  # its name before the backbone zoo
        type=Path,
        default=paths.backbone_weights,
        help="the fetch_backbone folder",
    )
    p.add_argument("--head", type=Path, default=paths.clip_head, help="the clip_head artifact")
    p.add_argument("--sam-weights", type=Path, default=paths.sam_weights, help="the fetch_sam folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    bridge_cli.add_parser(commands)
    return top


def _check_cmap(name: str) -> None:
    """DepthcoreError unless matplotlib has a colormap ``name``."""
    import matplotlib

    if name not in matplotlib.colormaps:
        raise DepthcoreError(
            f"--cmap {name} is not a matplotlib colormap: use e.g. turbo, viridis, magma or plasma "
            "(python -c 'import matplotlib; print(list(matplotlib.colormaps))' lists them all)"
        )


def predict(args: argparse.Namespace) -> int:
    from depthcore.inference.live import ZEROSHOT_MODEL, LivePredictor
    from depthcore.inference.predict import OutputOptions, check_output_folder, image_files, predict_images

    given = [getattr(args, name) for name in ("fx", "fy", "cx", "cy")]
    if any(v is not None for v in given) and None in given:
        raise DepthcoreError("--fx, --fy, --cx and --cy go together: give all four, or none for NYUv2's camera")
    if args.batch_size < 1:
        raise DepthcoreError(f"--batch-size must be at least 1, got {args.batch_size}")
    _check_cmap(args.cmap)
    check_output_folder(args.out)
    inputs = image_files(args.inputs)  # two inputs of one stem: refused before the model loads
    device = _device(args.device)
    if args.model == ZEROSHOT_MODEL:
        predictor = LivePredictor.zeroshot(backbone_weights=args.backbone_weights, head=args.head, device=device)
    else:
        predictor = LivePredictor.from_checkpoint(
            args.model,
            backbone_weights=args.backbone_weights,
            head=args.head,
            sam_weights=args.sam_weights,
            device=device,
        )
    options = OutputOptions(
        ply=args.ply,
        intrinsics=None if None in given else tuple(given),
        cmap=args.cmap,
        colorbar=args.colorbar,
        overwrite=args.overwrite,
        crop_only=args.crop_only,
    )
    summary = predict_images(
        predictor, inputs, args.out, options=options, batch_size=args.batch_size, progress=not args.quiet
    )
    print(f"{predictor.name} on {device}: wrote {len(summary.written)} image(s) to {args.out}", end="")
    if summary.skipped:
        print(f", skipped {len(summary.skipped)} whose outputs exist (--overwrite to redo them)", end="")
    print()
    for reason in summary.failed.values():
        print(f"failed: {reason}", file=sys.stderr)
    return EXIT_IMAGES_FAILED if summary.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "bridge":
            return bridge_cli.run(args, _device(args.device))
        return predict(args)
    except DepthcoreError as exc:
        print(f"depthcore {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            f"depthcore {args.command}: interrupted; every image written so far is complete (rerun to do the rest: "
            "finished images are skipped)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
