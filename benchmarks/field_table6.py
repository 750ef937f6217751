"""What Table 6 costs on the field's protocol: every backbone of the zoo, live features, the references' recipes.

The field's protocol (docs/probes.md "The field's protocol") trains each probe on the raw NYUv2 frames with the
frozen backbone run live on every augmented 416 x 544 crop, and evaluates the official 654 test images on the
full frame with flip test-time augmentation. Nothing is cached, so every training sample costs a backbone forward
(no gradient) besides the probe's forward and backward. Per backbone (seeded random weights: no pretrained file can
be downloaded here) and per probe recipe, this script gives:

1. FLOPs (``torch.utils.flop_counter`` on the meta device / FakeTensorMode: matmuls, convolutions, attention) of
   the backbone's forward on one training crop and on one full test frame (``eval.frame: full``: the frame through
   the backbone's own preprocessing, e.g. 490 x 644 for DINOv2, SAM's 1024 x 1024), and of the probe's forward and
   forward + backward on the crop's features;
2. measured throughput on ``--device`` (this CPU, or a GPU with ``--device cuda`` under float16 autocast): the
   backbone's no-grad forward per image, and a whole live training step (backbone forward without gradient, probe
   forward and backward, AdamW step) at ``--batch`` images (CPU default 1, GPU 8); on the CPU a step over
   2 TFLOPs (every DPT probe: minutes a step on 2 cores) is counted, not timed, unless ``--time-heavy``;
3. the projected GPU hours of the whole field-scale Table 6 per (backbone, recipe) over ``--seeds`` seeds:
   training samples (recipe) x (backbone forward + probe training FLOPs) + 654 x 2 (flip TTA) full-frame
   evaluations, at ``--tflops`` effective TFLOP/s; with ``--device cuda``, also from the measured step rate.

Recipes (the references' training lengths; docs/probes.md cites each): DINOv2's linear heads (lin. 1: the last
block; lin. 4: four blocks; 38,400 iterations at batch 2), DINOv3's linear head (38,400 iterations at batch 16, on
the final-normed last block) and Probe3D's DPT probe (10 epochs of the 24,231 BTS frames at batch 8).

Prints a table and writes benchmarks/results/field_table6.json (``--quick``: one timed step, no JSON unless
``--out``).

    python benchmarks/field_table6.py                                  # every backbone (minutes on 2 CPU cores)
    python benchmarks/field_table6.py --quick --backbones dinov2_vits14
    python benchmarks/field_table6.py --device cuda --out benchmarks/results/field_table6_gpu.json  # gpu.sh
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from backbones import (  # this folder's module
    build_probe,
    count_flops,
    gpu_hours,
    machine,
    on_meta,
    probe_flops,
    write_results,
)
from torch import nn

from depthcore.config.offline import OFFLINE
from depthcore.config.params import PAPER_BACKBONE, load_params
from depthcore.data.synthetic import render_sample
from depthcore.device import autocast
from depthcore.geometry.frame import DEPTHCLIP_CROP, NYU_HEIGHT, NYU_WIDTH, crop_shape
from depthcore.losses.silog import masked_silog
from depthcore.models.adapters.base import clip_key
from depthcore.models.backbones.zoo.base import CLS_SUFFIX, parameter_count
from depthcore.models.backbones.zoo.registry import BACKBONES, build_backbone
from depthcore.paper.shards import NYUV2_TEST_IMAGES

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "field_table6.json"
DEFAULT_TFLOPS = 100.0  # as benchmarks/backbones.py: about 10 % of an H200's dense float16 peak
BTS_TRAIN_FRAMES = 24_231  # the raw-frame training list DINOv2 and DINOv3 train their NYU heads on
HEAVY_STEP_FLOPS = 2e12  # a live CPU step above this is counted, not timed (--time-heavy: timed once, no warm-up)
TTA_VIEWS = 2  # flip test-time augmentation: the image and its mirror


@dataclass(frozen=True)
class Recipe:
    """A reference's probe training: the probe, which layers it reads, and its length in samples."""

    name: str
    probe: str  # linear_probe | dpt_probe
    layers: str  # last (the last block) | four (the backbone's four configured blocks)
    iterations: int | None  # optimiser steps (None: by epochs)
    epochs: int | None  # passes over the BTS frames (None: by iterations)
    batch_size: int
    source: str

    @property
    def samples(self) -> int:
        """Training samples one run draws (each one crop through the backbone and the probe)."""
        if self.iterations is not None:
            return self.iterations * self.batch_size
        return self.epochs * BTS_TRAIN_FRAMES


RECIPES = (
    Recipe("dinov2_lin1", "linear_probe", "last", 38_400, None, 2, "DINOv2 nyu linear config: 38,400 it, batch 2"),
    Recipe("dinov2_lin4", "linear_probe", "four", 38_400, None, 2, "DINOv2 nyu linear4 config: 38,400 it, batch 2"),
    Recipe("dinov3_lin", "linear_probe", "last", 38_400, None, 16, "DINOv3 depth linear eval: 38,400 it, batch 16"),
    Recipe("probe3d_dpt", "dpt_probe", "four", None, 10, 8, "Probe3D ten_epoch.yaml: 10 epochs, batch 8"),
)


# ------------------------------------------------------------------------------------------ shapes
def block_layers(backbone) -> tuple[str, ...]:
    """The backbone's transformer blocks in order (empty for a ResNet)."""
    return tuple(layer for layer in backbone.layers if layer.startswith("block"))


def recipe_layers(recipe: Recipe, backbone, configured: tuple[str, ...]) -> tuple[str, ...] | None:
    """The layers ``recipe`` reads on ``backbone``: the last block, or the four configured blocks (params
    ``backbones.<name>.layers``); a ResNet: layer4 (linear), layer1..layer4 (DPT). None where it does not apply."""
    blocks = block_layers(backbone)
    if not blocks:  # a ResNet: the linear heads on layer4, the DPT probe on its four stages (no lin. 4)
        if recipe.probe == "dpt_probe":
            return ("layer1", "layer2", "layer3", "layer4")
        return ("layer4",) if recipe.layers == "last" else None
    if recipe.layers == "last":
        return (blocks[-1],)
    four = tuple(layer for layer in configured if layer in blocks)
    return four if len(four) == 4 else None


def full_frame_input(backbone) -> tuple[int, int]:
    """The network input of a whole 480 x 640 test frame, by the backbone's own preprocessing (what ``eval.frame:
    full`` feeds it: the frame as it is for patch 16 and CLIP RN50, 490 x 644 for DINOv2, SAM's 1024 x 1024)."""
    with torch.no_grad():
        return tuple(backbone.preprocess(torch.zeros(1, 3, NYU_HEIGHT, NYU_WIDTH)).shape[-2:])


def backbone_flops(backbone, layers: tuple[str, ...], size: tuple[int, int]) -> int:
    """FLOPs of forward_features of one image of network input ``size`` (meta device)."""
    meta = on_meta(backbone)
    x = torch.empty(1, 3, *size, device="meta")
    return count_flops(lambda: meta.forward_features(x, layers))


def probe_config(params, recipe: Recipe, layers: tuple[str, ...], class_token: bool):
    """The probe's settings for ``recipe``: params' ``adapters.<probe>`` with the recipe's layers; the class token
    where the backbone has one."""
    section = getattr(params.adapters, recipe.probe)
    return section.model_copy(update={"layers": layers, "class_token": class_token})


# ------------------------------------------------------------------------------------------ timing
def live_batch(backbone, x: torch.Tensor, layers: tuple[str, ...], cfg) -> dict[str, torch.Tensor]:
    """The probe's batch from a live forward (no gradient): ``clip_<layer>`` B x C x h x w (and ``_cls`` B x C)."""
    with torch.no_grad():
        features = backbone.forward_features(x, layers)
    wanted = set(cfg.batch_keys())
    batch = {}
    for layer in layers:
        for suffix in ("", CLS_SUFFIX):
            if layer + suffix in features and clip_key(layer) + suffix in wanted:
                batch[clip_key(layer) + suffix] = features[layer + suffix]
    return batch


def crops(batch: int, device: torch.device) -> torch.Tensor:
    """B x 3 x 416 x 544 crops of rendered rooms in [0, 1]."""
    top, bottom, left, right = DEPTHCLIP_CROP
    images = [render_sample(0, i, views_per_room=1).rgb[top:bottom, left:right] for i in range(batch)]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255).to(device)


def time_calls(fn, warmup: int, timed: int, device: torch.device) -> list[float]:
    """Seconds of each of ``timed`` calls of ``fn`` after ``warmup`` untimed ones (synchronised on CUDA)."""
    seconds = []
    for i in range(warmup + timed):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    return seconds


def live_step(backbone, probe: nn.Module, rgb: torch.Tensor, layers, cfg, device) -> callable:
    """One live training step: preprocess + backbone forward (no gradient), probe forward, silog, backward,
    AdamW step (float16 autocast on CUDA only)."""
    optimiser = torch.optim.AdamW(probe.parameters(), lr=1e-4)
    target = torch.empty(rgb.shape[0], 1, *rgb.shape[-2:], device=device).uniform_(0.5, 9.5)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with autocast(device, enabled=device.type == "cuda"):
            batch = live_batch(backbone, backbone.preprocess(rgb), layers, cfg)
            prediction = probe(batch)
        masked_silog(prediction.float(), target, 0.85).backward()
        optimiser.step()

    return step


# ------------------------------------------------------------------------------------------ one backbone
def bench(name: str, params, args, device: torch.device) -> dict:
    """Every figure of backbone ``name`` and each recipe that applies to it (module docstring 1-3)."""
    cfg = params.clip if name == PAPER_BACKBONE else getattr(params.backbones, name)
    backbone = build_backbone(name, cfg=cfg, clip=params.clip).to(device)
    configured = tuple(params.clip.cache_layers if name == PAPER_BACKBONE else cfg.layers)
    crop_input, frame_input = tuple(backbone.input_size), full_frame_input(backbone)
    result = {
        "parameters": parameter_count(backbone),
        "crop_input": list(crop_input),
        "frame_input": list(frame_input),
        "class_token": bool(backbone.class_token),
        "recipes": {},
    }
    rgb = crops(args.batch, device)
    with torch.no_grad(), autocast(device, enabled=device.type == "cuda"):
        x = backbone.preprocess(rgb[:1])
        forward_s = time_calls(lambda: backbone.forward_features(x, backbone.layers[-1:]), 1, args.images, device)
    result["forward_images_per_s"] = 1.0 / float(np.mean(forward_s))
    for recipe in RECIPES:
        layers = recipe_layers(recipe, backbone, configured)
        if layers is None:
            continue
        cfg_probe = probe_config(params, recipe, layers, bool(backbone.class_token))
        bb_crop = backbone_flops(backbone, layers, crop_input)
        bb_frame = backbone_flops(backbone, layers, frame_input)
        probe = probe_flops(recipe.probe, cfg_probe, backbone)
        frame_scale = (NYU_HEIGHT * NYU_WIDTH) / float(np.prod(crop_shape(DEPTHCLIP_CROP)))
        train = recipe.samples * (bb_crop + probe["train"])
        test = NYUV2_TEST_IMAGES * TTA_VIEWS * (bb_frame + probe["forward"] * frame_scale)
        torch.manual_seed(0)
        model = build_probe(recipe.probe, cfg_probe, backbone).to(device).train()
        step_flops = args.batch * (bb_crop + probe["train"])
        heavy = device.type == "cpu" and step_flops > HEAVY_STEP_FLOPS
        if heavy and not args.time_heavy:
            seconds = []  # minutes a step on 2 CPU cores: counted, not timed (--time-heavy times one)
        else:
            calls = (0, 1) if heavy or args.quick else (1, args.steps)
            seconds = time_calls(live_step(backbone, model, rgb, layers, cfg_probe, device), *calls, device)
        rate = args.batch / float(np.mean(seconds)) if seconds else None
        entry = {
            "layers": list(layers),
            "samples_per_run": recipe.samples,
            "source": recipe.source,
            "flops": {
                "backbone_crop": bb_crop,
                "backbone_frame": bb_frame,
                "probe_forward": probe["forward"],
                "probe_train": probe["train"],
            },
            "probe_parameters": parameter_count(model),
            "measured": {
                "device": str(device),
                "batch": args.batch,
                "step_s_each": seconds,
                "cold": heavy,
                "train_samples_per_s": rate,
            },
            "gpu_hours_from_flops": gpu_hours(args.seeds * (train + test), args.tflops),
        }
        if device.type == "cuda" and rate:
            entry["gpu_hours_measured"] = args.seeds * recipe.samples / rate / 3600.0
        result["recipes"][recipe.name] = entry
        del model
    return result


def _rate(rate: float | None) -> str:
    return "not timed" if rate is None else f"{rate:.3f}"


def print_table(results: dict) -> None:
    print(
        f"\n{'backbone':<16} {'recipe':<12} {'layers':<28} {'GFLOP bb':>8} {'GFLOP probe':>11} "
        f"{'samples/s':>9} {'GPU h':>7}"
    )
    for name, b in results["backbones"].items():
        for recipe, r in b["recipes"].items():
            f = r["flops"]
            print(
                f"{name:<16} {recipe:<12} {','.join(r['layers']):<28} {f['backbone_crop'] / 1e9:>8.1f} "
                f"{f['probe_train'] / 1e9:>11.1f} {_rate(r['measured']['train_samples_per_s']):>9} "
                f"{r['gpu_hours_from_flops']:>7.2f}"
            )
    print(
        f"\nfield-scale Table 6: {results['total_gpu_hours_from_flops']:.1f} GPU h from FLOPs "
        f"({results['assumptions']['effective_tflops']:g} TFLOP/s effective, {results['assumptions']['seeds']} seeds)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=None, help="backbones (default: every registered one)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--batch", type=int, default=None, help="live step batch (CPU default 1, CUDA 8)")
    parser.add_argument("--images", type=int, default=2, help="timed backbone forwards (default 2)")
    parser.add_argument("--steps", type=int, default=2, help="timed live steps (default 2; heavy CPU steps: 1)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per row (default 3)")
    parser.add_argument("--tflops", type=float, default=DEFAULT_TFLOPS, help="effective GPU TFLOP/s (default 100)")
    parser.add_argument("--quick", action="store_true", help="one timed step and forward; no JSON unless --out")
    parser.add_argument(
        "--time-heavy", action="store_true", help=f"also time CPU steps over {HEAVY_STEP_FLOPS:g} FLOPs"
    )
    parser.add_argument("--out", type=Path, default=None, help=f"JSON path (default {RESULTS}; --quick: none)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.batch is None:
        args.batch = 8 if device.type == "cuda" else 1
    if args.quick:
        args.images = args.steps = 1
    started = time.perf_counter()
    if device.type == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    params = load_params(REPO / "params.yaml", OFFLINE)
    names = args.backbones or BACKBONES.names()
    results = {
        "machine": machine(),
        "assumptions": {
            "effective_tflops": args.tflops,
            "seeds": args.seeds,
            "bts_train_frames": BTS_TRAIN_FRAMES,
            "test_images": NYUV2_TEST_IMAGES,
            "tta_views": TTA_VIEWS,
            "recipes": {
                r.name: {"probe": r.probe, "samples": r.samples, "batch": r.batch_size, "source": r.source}
                for r in RECIPES
            },
            "flops": "FlopCounterMode: matmuls, convolutions, attention; element-wise ops, resizes, the bins head, "
            "data loading and the optimiser step are not counted. The probe's full-frame evaluation FLOPs are its "
            "crop FLOPs scaled by the frame's pixel count (480 x 640 / 416 x 544)",
            "weights": "seeded random weights (pretrained: none): pretrained files cannot be downloaded here",
        },
        "backbones": {},
    }
    if device.type == "cpu":
        results["machine"]["gpu"] = "none: GPU hours are counted FLOPs / the effective throughput"
    else:
        results["machine"]["gpu"] = torch.cuda.get_device_name(device)
    for name in names:
        print(f"backbone {name} ...", flush=True)
        results["backbones"][name] = bench(name, params, args, device)
    results["total_gpu_hours_from_flops"] = sum(
        r["gpu_hours_from_flops"] for b in results["backbones"].values() for r in b["recipes"].values()
    )
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["run_seconds"] = time.perf_counter() - started
    print_table(results)
    write_results(results, args.out or (None if args.quick else RESULTS))


if __name__ == "__main__":
    main()
