"""Benchmark the backbone zoo and the depth probes: what Table 6 costs, measured on this CPU and projected to a GPU.

For every registered backbone (clip_rn50 with ``clip.cache_layers``, the others with ``backbones.<name>.layers``,
plus the zero-shot layer ``cached_layers`` adds: ``dense`` for clip_vitb16), with seeded random weights (no
pretrained weights can be downloaded here):

1. features per second on this CPU: the features stage's work per image, preprocess + forward_features of the
   image and its mirror (2 views), float32, ``torch.set_num_threads`` = the cores: the forward passes are timed
   inside the real writer's run (3), its first image the warm-up, and the preprocess on its own;
2. FLOPs per image (2 views), counted once by ``torch.utils.flop_counter.FlopCounterMode`` on a meta-device copy
   (shapes only, no arithmetic; the counter counts matmuls, convolutions and attention, not element-wise ops or
   resizes), and the GPU time of NYUv2's 1449 images at ``--tflops`` effective TFLOP/s;
3. bytes per image in the features store: raw (float16, both views, every cached array incl. ``<layer>_cls``)
   from the stored shapes, and on disk from a store written by the real writer (``extract_features``) for
   1 + ``--images`` rendered rooms (2 for a heavy backbone); projected to NYUv2's 1449 images (random weights
   compress differently from pretrained ones: indicative).

For each probe (linear_probe, dpt_probe) on each backbone, with the settings of its Table 6 row of
``paper/rows.yaml`` (clip_rn50: linear on [layer4], DPT on [layer1..layer4] (the row caches layer1 too), no class
token; sam_vitb: no class token):

4. training images/s on this CPU: forward + backward (silog, variance focus of the row) + an AdamW step on random
   float16 inputs of the cached shapes, one pass per image (the view the loader gives); the linear probe at its
   published batch (2), the DPT probe at ``--dpt-batch`` (1: its published 8, even 2, take minutes a step here);
   FLOPs per pass (forward and forward + backward, counted under FakeTensorMode) and the parameter count;
5. Table 6's added GPU time from those FLOPs: per row, seeds x epochs (published preset) x 716 training images
   x passes per sample (2 with ``train.flip: average``: image and mirror, both with gradients) x training FLOPs,
   plus a flip-averaged validation pass over the 79 val images every epoch and the flip-averaged evaluation of
   the 654 test images per seed; plus each features store once (the RN50 DPT row's layer1 store is a second
   RN50 run). Summed in GPU hours at ``--tflops``.

Step counts follow the work, to keep the run short on 2 cores: a backbone over 1 TFLOP per image (SAM ViT-B at
1024 x 1024) is timed on 1 image after the warm-up; a probe step over 1 TFLOP (every DPT probe but RN50's) is
timed once with no warm-up (``cold`` in the JSON: the light steps' first-step / warm-step ratio shows what that
costs). The timings are of a shared machine: the load average before and after is recorded.

Prints a table and writes benchmarks/results/backbones.json (``--quick``: fewer images and steps, a fast check
that writes only with ``--out``).

    python benchmarks/backbones.py                  # ~7-8 min on 2 idle CPU cores (12 min under load)
    python benchmarks/backbones.py --quick --backbones clip_rn50 dinov2_vits14
    python benchmarks/backbones.py --tflops 200     # another GPU throughput assumption
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import zarr
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from depthcore.config.offline import OFFLINE
from depthcore.config.params import Params, load_params
from depthcore.data.synthetic import render_sample
from depthcore.features.backbone import CLS_SUFFIX, N_VIEWS, cached_layers, crop_rgb, extract_features
from depthcore.losses.silog import masked_silog
from depthcore.models.adapters.base import AdapterContext, clip_key
from depthcore.models.adapters.registry import build_adapter
from depthcore.models.backbones.zoo.base import parameter_count
from depthcore.models.backbones.zoo.registry import BACKBONES, build_backbone
from depthcore.paper.rows import load_rows, row_params
from depthcore.paper.shards import NYUV2_TEST_IMAGES
from depthcore.training.settings import training_settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "backbones.json"
NYU_IMAGES = 1449  # every labelled NYUv2 image gets features
NYU_LABELLED_TRAIN = 795
NYU_TRAIN_IMAGES = 716  # the labelled training images less the 10 % val carve (by scene)
NYU_VAL_IMAGES = NYU_LABELLED_TRAIN - NYU_TRAIN_IMAGES  # the 10 % val carve: 79
PROBES = ("linear_probe", "dpt_probe")
FEATURE_BYTES = 2  # float16
HEAVY_IMAGE_FLOPS = 1e12  # a backbone above this per image (2 views) is timed on 1 image
HEAVY_STEP_FLOPS = 1e12  # a probe step above this is timed once, with no warm-up
DEFAULT_TFLOPS = 100.0


# ------------------------------------------------------------------------------------------ helpers
def machine() -> dict:
    """This machine, as far as the timings depend on it."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": "none lent to this run: every GPU figure is projected from counted FLOPs",
        "load_average_start": list(os.getloadavg()),
    }


def _cpu_model() -> str:
    """The 'model name' of /proc/cpuinfo, where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def count_flops(fn) -> int:
    """FLOPs ``fn()`` runs, counted by FlopCounterMode (matmuls, convolutions, attention)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def on_meta(module: nn.Module) -> nn.Module:
    """A copy of ``module`` on the meta device: shapes without arithmetic, for counting FLOPs."""
    return copy.deepcopy(module).to("meta")


def gpu_hours(flops: float, tflops: float) -> float:
    """Hours ``flops`` take at ``tflops`` effective TFLOP/s."""
    return flops / (tflops * 1e12) / 3600.0


def store_bytes(path: Path) -> int:
    """Bytes of ``path``'s files on disk, metadata (zarr.json) excluded."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "zarr.json")


def render_datasets(tmp: Path, sizes: set[int]) -> dict[int, Path]:
    """Size -> a dataset.zarr holding only ``rgb`` (N x 480 x 640 x 3 uint8) of the first N rendered rooms
    (seed 0, one view per room): what the features writer reads."""
    rgb = np.stack([render_sample(0, i, views_per_room=1).rgb for i in range(max(sizes))])
    paths = {}
    for n in sorted(sizes):
        paths[n] = tmp / f"dataset_{n}.zarr"
        group = zarr.open_group(str(paths[n]), mode="w")
        array = group.create_array(name="rgb", shape=rgb[:n].shape, chunks=(1, *rgb.shape[1:]), dtype=rgb.dtype)
        array[...] = rgb[:n]
    return paths


# ------------------------------------------------------------------------------------------ backbones
def feature_layers(name: str, params: Params, backbone) -> tuple[str, ...]:
    """The layers the features stage caches for backbone ``name`` under ``params``."""
    chosen = params.clip.cache_layers if name == "clip_rn50" else getattr(params.backbones, name).layers
    return cached_layers(backbone, tuple(chosen))


def feature_flops(backbone, layers: tuple[str, ...]) -> int:
    """FLOPs of forward_features on one image and its mirror at the canonical input size (meta device)."""
    meta = on_meta(backbone)
    x = torch.empty(N_VIEWS, 3, *backbone.input_size, device="meta")
    return count_flops(lambda: meta.forward_features(x, layers))


@contextlib.contextmanager
def timed_forward(backbone) -> Iterator[list[float]]:
    """Seconds of each ``backbone.forward_features`` call (one image and its mirror, in the writer) while the
    block runs."""
    seconds: list[float] = []
    original = backbone.forward_features

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
        return out

    backbone.forward_features = timed  # an instance attribute over the method, removed afterwards
    try:
        yield seconds
    finally:
        del backbone.forward_features


def preprocess_s(backbone, rgb: np.ndarray) -> float:
    """Seconds per image of the crop, ``preprocess`` and the mirror image (the features stage's input side),
    after one untimed image."""

    def one(i: int) -> torch.Tensor:
        x = backbone.preprocess(crop_rgb(rgb[i : i + 1]))
        return torch.cat([x, x.flip(-1)])

    one(0)
    start = time.perf_counter()
    for i in range(len(rgb)):
        one(i)
    return (time.perf_counter() - start) / len(rgb)


def write_store(backbone, name: str, dataset: Path, out: Path, layers: tuple[str, ...]) -> dict:
    """Write the features store of ``layers`` for ``dataset`` with the real writer (CPU, float32, random weights)
    and measure it: the seconds of each image's forward_features (image + mirror), the writer's end-to-end
    images/s (preprocess, forward, float16, compress, write) and per array the stored shape per image, raw bytes
    (float16, both views) and bytes on disk per image."""
    weights = {"backbone": name, "model": name, "pretrained": "none"}
    start = time.perf_counter()
    with timed_forward(backbone) as forward_s:
        store = extract_features(
            dataset, out, backbone=backbone, weights=weights, layers=layers, key=None, device="cpu", progress=False
        )
    seconds = time.perf_counter() - start
    group = zarr.open_group(str(store), mode="r")
    n = int(group.attrs["n_images"])
    arrays = {}
    for array_name in sorted(group.array_keys()):
        shape = group[array_name].shape[1:]
        arrays[array_name] = {
            "shape_per_image": list(shape),
            "raw_bytes": int(np.prod(shape)) * FEATURE_BYTES,
            "disk_bytes": store_bytes(store / array_name) / n,
        }
    return {"arrays": arrays, "images": n, "writer_images_per_s": n / seconds, "forward_s": forward_s}


def cache_size(arrays: dict, layers: tuple[str, ...]) -> dict:
    """Bytes per image and NYUv2 (1449 images) GB of the arrays of ``layers`` (and their ``_cls``), raw and on disk."""
    names = [a for a in arrays if a in layers or (a.endswith(CLS_SUFFIX) and a.removesuffix(CLS_SUFFIX) in layers)]
    raw = sum(arrays[a]["raw_bytes"] for a in names)
    disk = sum(arrays[a]["disk_bytes"] for a in names)
    return {
        "layers": list(layers),
        "arrays": names,
        "raw_bytes_per_image": raw,
        "disk_bytes_per_image": disk,
        "compression_ratio": raw / disk,
        "nyuv2_raw_GB": raw * NYU_IMAGES / 1e9,
        "nyuv2_disk_GB": disk * NYU_IMAGES / 1e9,
    }


def image_parameters(backbone) -> int:
    """Parameters of the image encoder: a CLIP's ``visual`` tower (its text tower left out), else the whole."""
    visual = [module for name, module in backbone.named_modules() if name.endswith("visual")]
    return parameter_count(visual[0]) if visual else parameter_count(backbone)


def bench_backbone(name: str, params: Params, datasets: dict[int, Path], tmp: Path, args) -> tuple:
    """Every measurement of backbone ``name`` (see the module docstring, 1-3); returns (results, backbone).

    The forward passes timed are the writer's own: its first image is the warm-up, the others are timed; a
    backbone over HEAVY_IMAGE_FLOPS per image writes 2 images (1 timed), the others 1 + ``args.images``."""
    start = time.perf_counter()
    backbone = build_backbone(name, cfg=getattr(params.backbones, name), clip=params.clip)
    build_s = time.perf_counter() - start
    layers = feature_layers(name, params, backbone)
    flops = feature_flops(backbone, layers)
    dataset = datasets[2 if flops > HEAVY_IMAGE_FLOPS else max(datasets)]
    # clip_rn50: layer1 too, for the store the DPT probe's row caches (clip.cache_layers: [layer1, ..., layer4])
    written = ("layer1", *layers) if name == "clip_rn50" else layers
    store = write_store(backbone, name, dataset, tmp / f"{name}.zarr", written)
    forward = float(np.mean(store["forward_s"][1:]))
    with torch.no_grad():
        prep = preprocess_s(backbone, zarr.open_group(str(dataset), mode="r")["rgb"][...])
    result = {
        "weights": "seeded random (pretrained: none): no pretrained weights can be downloaded here",
        "parameters": image_parameters(backbone),
        "parameters_with_text_tower": parameter_count(backbone),
        "input_size": list(backbone.input_size),
        "layers": list(layers),
        "layer_shapes": {
            layer: [backbone.layer_specs[layer].channels, *backbone.layer_specs[layer].grid] for layer in layers
        },
        "class_token": bool(backbone.class_token),
        "build_s": build_s,
        "cpu": {
            "images_per_s": 1.0 / (prep + forward),
            "preprocess_s_per_image": prep,
            "forward_s_per_image": forward,
            "forward_s_each": store["forward_s"],
            "timed_images": len(store["forward_s"]) - 1,
            "warmup_images": 1,
            "writer_images_per_s": store["writer_images_per_s"],
        },
        "flops_per_image": flops,
        "nyuv2_features_gpu_s": flops * NYU_IMAGES / (args.tflops * 1e12),
        "store": {"written_layers": list(written), "images": store["images"], "arrays": store["arrays"]},
        "cache": cache_size(store["arrays"], layers),
    }
    if name == "clip_rn50":
        result["cache_dpt_row"] = cache_size(store["arrays"], ("layer1", "layer2", "layer3", "layer4"))
    return result, backbone


# ------------------------------------------------------------------------------------------ probes
def table6_rows(base: Params) -> dict[str, Params]:
    """Row id -> the validated params of seed 0 of every Table 6 row that trains a probe (paper/rows.yaml)."""
    rows = load_rows(REPO / "paper" / "rows.yaml")
    chosen = {}
    for row_id, row in rows.items():
        if row.table == 6 and row.runs and row.params.get("adapter") in PROBES:
            chosen[row_id] = row_params(base, row_id, row)
    return chosen


def probe_batch(cfg, backbone, batch: int, *, empty: bool = False) -> dict[str, torch.Tensor]:
    """Random float16 inputs (``empty``: uninitialised) of the cached shapes for the batch keys of ``cfg``:
    ``clip_<layer>`` B x C x h x w and ``clip_<layer>_cls`` B x C."""
    generator = torch.Generator().manual_seed(0)
    shapes = {}
    for layer in cfg.layers:
        spec = backbone.layer_specs[layer]
        shapes[clip_key(layer)] = (batch, spec.channels, *spec.grid)
        shapes[clip_key(layer) + CLS_SUFFIX] = (batch, spec.channels)
    return {
        key: torch.empty(shape, dtype=torch.float16)
        if empty
        else torch.randn(shape, generator=generator).to(torch.float16)
        for key, shape in shapes.items()
        if key in cfg.batch_keys()
    }


def build_probe(probe: str, cfg, backbone) -> nn.Module:
    """The probe ``probe`` on ``backbone``'s layers (channels and strides from its layer specs)."""
    specs = backbone.layer_specs
    context = AdapterContext(
        layer_channels={layer: spec.channels for layer, spec in specs.items()},
        layer_strides={layer: spec.stride for layer, spec in specs.items()},
    )
    return build_adapter(probe, cfg=cfg, context=context)


def probe_flops(probe: str, cfg, backbone) -> dict:
    """FLOPs of one pass of one image: forward, and forward + backward (the trained step; the inputs need no
    gradient). Counted on a copy of the probe built under FakeTensorMode (shapes only; the meta device would do,
    but the bins head's ``torch.autocast`` has no meta device)."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = build_probe(probe, cfg, backbone).train()
        batch = probe_batch(cfg, backbone, 1, empty=True)
        forward = count_flops(lambda: model(batch))
        train = count_flops(lambda: model(batch).mean().backward())
    return {"forward": forward, "train": train}


def train_steps(model: nn.Module, batch: dict, target: torch.Tensor, settings, lam: float, steps: int) -> list:
    """Seconds of each of ``steps`` training steps on this CPU: forward, silog, backward, AdamW step."""
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        masked_silog(model(batch), target, lam).backward()
        optimiser.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def bench_probe(row_id: str, params: Params, backbone, args) -> dict:
    """Every measurement of the probe of Table 6 row ``row_id`` on its backbone (module docstring, 4)."""
    probe, cfg = params.adapter, params.adapter_config
    settings = training_settings(params, "")
    torch.manual_seed(0)
    model = build_probe(probe, cfg, backbone)
    flops = probe_flops(probe, cfg, backbone)
    batch_size = settings.batch_size if probe == "linear_probe" else args.dpt_batch
    cold = args.quick or flops["train"] * batch_size > HEAVY_STEP_FLOPS
    warmup, timed = (0, 1) if cold else (1, args.steps)
    batch = probe_batch(cfg, backbone, batch_size)
    target = torch.empty(batch_size, 1, *model.image_size).uniform_(0.5, 9.5)
    seconds = train_steps(model, batch, target, settings, params.losses.silog.variance_focus, warmup + timed)
    return {
        "row": row_id,
        "layers": list(cfg.layers),
        "class_token": bool(cfg.class_token),
        "batch_keys": list(cfg.batch_keys()),
        "parameters": parameter_count(model),
        "published": {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr},
        "flip": params.train.flip,
        "cpu": {
            "train_images_per_s": batch_size / float(np.mean(seconds[warmup:])),
            "batch_size": batch_size,
            "step_s_each": seconds,
            "timed_steps": timed,
            "warmup_steps": warmup,
            "cold": cold,
            "note": "one pass per image; with train.flip average a training sample is two passes (half the rate)",
        },
        "flops_per_image": flops,
        "train_to_forward_ratio": flops["train"] / flops["forward"],
    }


def project_row(probe: dict, params: Params, tflops: float) -> dict:
    """GPU hours of a Table 6 row from its probe's FLOPs (module docstring, 5), features excluded."""
    seeds = len(params.paper.seeds)
    epochs = probe["published"]["epochs"]
    passes = 2 if params.train.flip == "average" else 1
    flops = probe["flops_per_image"]
    train = seeds * epochs * NYU_TRAIN_IMAGES * passes * flops["train"]
    val = seeds * epochs * NYU_VAL_IMAGES * 2 * flops["forward"]  # flip-averaged validation every epoch
    test = seeds * NYUV2_TEST_IMAGES * 2 * flops["forward"]  # flip-averaged evaluation, once per seed
    return {
        "seeds": seeds,
        "epochs": epochs,
        "passes_per_training_image": passes,
        "train_flops": train,
        "val_flops": val,
        "test_flops": test,
        "gpu_hours": gpu_hours(train + val + test, tflops),
        "gpu_hours_train": gpu_hours(train, tflops),
    }


# ------------------------------------------------------------------------------------------ report
def print_table(results: dict) -> None:
    """The readable summary of ``results``."""
    a, m, t = results["assumptions"], results["machine"], results["table6"]
    print(f"\nGPU figures: counted FLOPs at {a['gpu']}; no GPU was lent to this run.")
    print(
        f"CPU figures: {m['cores']} cores, float32, seeded random weights; load average "
        f"{m['load_average_start']} -> {m['load_average_end']} (a shared machine: timings may be noisy).\n"
    )
    print(
        f"{'backbone':<14} {'params':>7} {'img/s CPU':>9} {'GFLOP/img':>9} {'GPU s NYU':>9} {'raw MB/img':>10} "
        f"{'disk MB/img':>11} {'NYU raw GB':>10} {'NYU disk GB':>11}  cached layers"
    )

    def cache_cells(c: dict) -> str:
        return (
            f"{c['raw_bytes_per_image'] / 1e6:>10.2f} {c['disk_bytes_per_image'] / 1e6:>11.2f} "
            f"{c['nyuv2_raw_GB']:>10.2f} {c['nyuv2_disk_GB']:>11.2f}  {','.join(c['layers'])}"
        )

    for name, b in results["backbones"].items():
        rate, gflops, seconds = b["cpu"]["images_per_s"], b["flops_per_image"] / 1e9, b["nyuv2_features_gpu_s"]
        cells = f"{b['parameters'] / 1e6:>6.1f}M {rate:>9.3f} {gflops:>9.1f} {seconds:>9.1f}"
        print(f"{name:<14} {cells} {cache_cells(b['cache'])}")
        if "cache_dpt_row" in b:
            print(f"{'  DPT row':<14} {'':>7} {'':>9} {'':>9} {'':>9} {cache_cells(b['cache_dpt_row'])}")
    print(
        f"\n{'Table 6 row':<24} {'params':>8} {'batch':>5} {'img/s CPU':>9} {'fwd GFLOP':>9} {'train GFLOP':>11} "
        f"{'epochs':>6} {'GPU h':>7}"
    )
    for row_id, row in t["rows"].items():
        p = results["probes"][row["probe"]][row["backbone"]]
        cpu, flops = p["cpu"], p["flops_per_image"]
        print(
            f"{row_id:<24} {p['parameters'] / 1e6:>7.2f}M {cpu['batch_size']:>5} {cpu['train_images_per_s']:>9.3f} "
            f"{flops['forward'] / 1e9:>9.1f} {flops['train'] / 1e9:>11.1f} {row['epochs']:>6} {row['gpu_hours']:>7.2f}"
            + (" (CPU step cold)" if cpu["cold"] else "")
        )
    print(
        f"\nTable 6 probes: {t['probe_gpu_hours']:.2f} GPU h (training + evaluation) + {t['features_gpu_hours']:.3f} "
        f"GPU h features ({len(t['features'])} stores) = {t['total_gpu_hours']:.2f} GPU h"
    )
    print(f"run time {results['run_seconds']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=None, help="backbones to measure (default: every one)")
    parser.add_argument("--images", type=int, default=2, help="timed images per backbone (default 2; heavy: 1)")
    parser.add_argument("--steps", type=int, default=2, help="timed probe steps (default 2; heavy: 1)")
    parser.add_argument("--dpt-batch", type=int, default=1, help="DPT probe batch on the CPU (published: 8)")
    parser.add_argument("--tflops", type=float, default=DEFAULT_TFLOPS, help="effective GPU TFLOP/s (default 100)")
    parser.add_argument("--quick", action="store_true", help="1 timed image / step, no probe warm-up; no JSON")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON path (default {RESULTS}; --quick: none)")
    args = parser.parse_args()
    if args.quick:
        args.images = 1
    started = time.perf_counter()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    base = load_params(REPO / "params.yaml", OFFLINE)
    names = args.backbones or BACKBONES.names()
    results: dict = {
        "machine": machine(),
        "assumptions": {
            "effective_tflops": args.tflops,
            "gpu": f"H200, float16 autocast, {args.tflops:g} TFLOP/s effective (about 10 % of its dense float16 peak)",
            "no_gpu": "no GPU was lent: GPU times are counted FLOPs / the effective throughput, nothing measured",
            "flops": "torch.utils.flop_counter.FlopCounterMode on the meta device: matmuls, convolutions, attention; "
            "element-wise ops, resizes, the bins head and the optimiser step are not counted",
            "weights": "seeded random weights (pretrained: none) for every backbone: pretrained ones cannot be "
            "downloaded here; their features compress differently, so the disk sizes are indicative",
            "images": "rendered synthetic rooms (480 x 640, depthcore.data.synthetic, seed 0)",
            "nyuv2": {
                "images": NYU_IMAGES,
                "train_images": NYU_TRAIN_IMAGES,
                "val_images": NYU_VAL_IMAGES,
                "test_images": NYUV2_TEST_IMAGES,
            },
            "table6": "per row: seeds x published epochs x 716 train images x passes (train.flip average: 2) x "
            "training FLOPs (forward + backward) + a flip-averaged val pass (79 images) per epoch + the flip-averaged "
            "test evaluation (654 images) per seed; plus each features store once (1449 images, 2 views). Data "
            "loading, decompression and checkpointing are not counted",
            "cpu_probe_batches": f"linear_probe at its published batch; dpt_probe at {args.dpt_batch} (published 8)",
        },
        "backbones": {},
        "probes": {probe: {} for probe in PROBES},
        "table6": {},
    }
    rows = {row_id: p for row_id, p in table6_rows(base).items() if p.backbone in names}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        datasets = render_datasets(tmp, {2, 1 + args.images})
        for name in names:
            print(f"backbone {name} ...", flush=True)
            results["backbones"][name], backbone = bench_backbone(name, base, datasets, tmp, args)
            for row_id, params in rows.items():
                if params.backbone == name:
                    print(f"  probe {params.adapter} ({row_id}) ...", flush=True)
                    results["probes"][params.adapter][name] = bench_probe(row_id, params, backbone, args)
            del backbone

    table_rows = {}
    for row_id, params in rows.items():
        probe = results["probes"][params.adapter][params.backbone]
        table_rows[row_id] = {"backbone": params.backbone, "probe": params.adapter} | project_row(
            probe, params, args.tflops
        )
    features = {}
    for params in rows.values():  # one features store per (backbone, cached layers)
        b = results["backbones"][params.backbone]
        layers = tuple(params.clip.cache_layers) if params.backbone == "clip_rn50" else tuple(b["layers"])
        features[f"{params.backbone}:{','.join(layers)}"] = b["nyuv2_features_gpu_s"] / 3600.0
    probe_hours = sum(row["gpu_hours"] for row in table_rows.values())
    results["table6"] = {
        "rows": table_rows,
        "features": features,
        "probe_gpu_hours": probe_hours,
        "features_gpu_hours": sum(features.values()),
        "total_gpu_hours": probe_hours + sum(features.values()),
        "excluded": "t6_clip_rn50_msa (same_as t3_l1: the paper's MSA, already in Table 3's cost)",
    }
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["run_seconds"] = time.perf_counter() - started
    print_table(results)
    write_results(results, args.out or (None if args.quick else RESULTS))


def write_results(results: dict, out: Path | None) -> None:
    """``results`` as indented JSON at ``out`` (None: nowhere, e.g. a --quick run without --out)."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
