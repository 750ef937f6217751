"""``depthcore bridge dinov2``: DINOv2's released NYU depth head evaluated by depthcore (docs/bridge.md).

    depthcore bridge dinov2 --backbone dinov2_vits14 --head linear4 --download --backbone-weights download

Head: ``--file PATH`` (a released ``*_nyu_<head>_head.pth``) or ``--download`` (into ``--cache``). Backbone:
``--backbone-weights`` PATH (Meta's ``*_pretrain.pth`` or timm's model.safetensors), ``download`` (Meta's file into
``--cache``) or ``none`` (seeded random weights: an offline check of the plumbing, not of the figure).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from depthcore.bridge.releases import HEADS, VARIANTS, BridgeError, backbone_remote, head_remote
from depthcore.config.paths import Paths
from depthcore.download import fetch

DEFAULT_CACHE = Path("data/weights/bridge")
DEFAULT_OUT = Path("metrics/bridge_{backbone}_{head}.json")
BACKBONE_DOWNLOAD, BACKBONE_NONE = "download", "none"


def add_parser(commands) -> None:
    """The ``bridge`` command and its ``dinov2`` subcommand, added to the ``depthcore`` command's subparsers."""
    bridge = commands.add_parser("bridge", help="evaluate published models' released files with depthcore")
    kinds = bridge.add_subparsers(dest="bridge", required=True)
    p = kinds.add_parser(
        "dinov2",
        help="DINOv2's released NYU depth heads (lin. 1, lin. 4, DPT)",
        description="Evaluate a released DINOv2 NYU depth head on the dataset store's test split as DINOv2 does "
        "(full frame centre-padded to multiples of 14, flip TTA, Eigen crop, 0.001-10 m) with depthcore's metrics.",
    )
    p.add_argument("--backbone", required=True, choices=sorted(VARIANTS))
    p.add_argument("--head", required=True, choices=HEADS, help="linear (lin. 1), linear4 (lin. 4) or dpt")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="the released head file (<backbone>_nyu_<head>_head.pth)")
    source.add_argument("--download", action="store_true", help="download the released head file into --cache")
    p.add_argument(
        "--backbone-weights",
        default=BACKBONE_DOWNLOAD,
        help="a backbone weights file, 'download' (Meta's <backbone>_pretrain.pth into --cache, the default) or "
        "'none' (seeded random weights: checks the plumbing only)",
    )
    p.add_argument("--init-seed", type=int, default=0, help="seed of the random backbone (--backbone-weights none)")
    p.add_argument("--data", type=Path, default=Paths().dataset, help="the dataset store (default: the pipeline's)")
    p.add_argument("--out", type=Path, help=f"metrics JSON (default {DEFAULT_OUT})")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"download folder (default {DEFAULT_CACHE})")
    p.add_argument("--device", default="auto", help="auto (a GPU when torch can use one) | cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--limit", type=int, help="evaluate only the first N test images (a quick check)")
    p.add_argument(
        "--raw-frames",
        action="store_true",
        help="read the store's test images and ground truth as they are (default: as BTS's test files hold them, "
        "which DINOv2 evaluates on: black beyond rows 7:474 / columns 7:632, depth in whole millimetres)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, device) -> int:
    """Run ``depthcore bridge dinov2``; prints the figures beside the published one."""
    from depthcore.bridge.evaluate import evaluate_dinov2_head

    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise BridgeError("--batch-size and --limit must be at least 1")
    progress = not args.quiet
    head_file = args.file or fetch(head_remote(args.backbone, args.head), args.cache, progress=progress)
    if args.backbone_weights == BACKBONE_NONE:
        backbone_file = None
    elif args.backbone_weights == BACKBONE_DOWNLOAD:
        backbone_file = fetch(backbone_remote(args.backbone), args.cache, progress=progress)
    else:
        backbone_file = Path(args.backbone_weights)
        if not backbone_file.is_file():
            raise BridgeError(f"--backbone-weights {backbone_file}: no such file (or use 'download' or 'none')")
    out = args.out or Path(str(DEFAULT_OUT).format(backbone=args.backbone, head=args.head))
    record = evaluate_dinov2_head(
        backbone=args.backbone,
        head=args.head,
        head_file=head_file,
        backbone_file=backbone_file,
        dataset=args.data,
        out=out,
        device=device,
        batch_size=args.batch_size,
        limit=args.limit,
        init_seed=args.init_seed,
        bts=not args.raw_frames,
        progress=progress,
    )
    m = record["metrics"]
    line = f"{args.backbone} {args.head}: rmse {m['rmse']:.4f} m, abs_rel {m['abs_rel']:.4f}, d1 {m['d1']:.4f}"
    published = record["published_rmse"]
    if published:
        line += f" (published rmse {published['rmse']})"
    print(f"{line} over {m['n_images']} image(s); wrote {out}")
    return 0
