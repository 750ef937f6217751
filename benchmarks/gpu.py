"""GPU smoke run and the timings a GPU makes meaningful (run by benchmarks/gpu.sh; under 8 minutes on one GPU).

1. smoke: the offline pipeline on the device: rendered rooms, seeded random CLIP RN50 features and zero-shot
   depth (build_inputs), a short training of the published MSA at narrow widths (train.flip average, AMP on
   CUDA, the train stage's loader with its default workers and pinned memory) and the evaluate stage on it;
   the metrics must be finite;
2. timings on the published models at the NYUv2 crop (416 x 544), each after a warm-up:
   - training images/s of the published MSA (124 M parameters, stem/layer1 on the fly) with AMP, batch 8, one
     optimizer step = the image and its mirror forwarded with gradients (train.flip average, the default),
     also one pass (flip random);
   - the loader's images/s (the train stage's DataLoader over the smoke pipeline's stores, ``runtime.num_workers:
     auto``) and its ratio to the model step (> 1: the GPU is fed);
   - CLIP RN50 features: images/s of image + mirror under float16 autocast;
   - SAM ViT-B (seeded random weights): image-encoder seconds per image, and the automatic mask generator's at
     the configured points per side (random weights find few masks: a lower bound of the real cost);
   - peak GPU memory of each part (torch.cuda.max_memory_allocated);
3. the projected GPU wall time of the NYUv2 work: CLIP features and SAM segments for 1449 images, and the paper
   grid: its FLOPs per row type (benchmarks/results/paper.json, counted by benchmarks/paper.py) at the sustained
   rate the published MSA's training step reaches here.

Writes benchmarks/results/gpu.json. ``--device cpu --quick`` is a dry run of the same code on a CPU.

    bash benchmarks/gpu.sh                        # on a machine with an NVIDIA GPU
    python benchmarks/gpu.py --device cpu --quick # the dry run (about 3 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from train import seconds_per_call  # benchmarks/train.py: this script's folder is on sys.path

from depthcore.config.offline import OFFLINE
from depthcore.config.params import load_params
from depthcore.config.paths import Paths
from depthcore.data.store import Store
from depthcore.device import autocast, describe_device, loader_workers, select_device
from depthcore.evaluation.evaluate import evaluate_checkpoint
from depthcore.features.backbone import preprocess
from depthcore.io import write_json_atomic
from depthcore.models.backbones.clip import build_clip_backbone
from depthcore.models.predict import to_device, upsample_to
from depthcore.pipeline.build import build_inputs
from depthcore.training.loop import train_loader, training_prediction
from depthcore.training.run import build_phase_model, build_run, train_model
from depthcore.training.settings import training_settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "gpu.json"
NYU_IMAGES = 1449
SMOKE = OFFLINE | {
    "data.synthetic.images": 12,
    "data.synthetic.views_per_room": 2,
    "train.preset": "custom",
    "train.epochs": 2,
    "train.batch_size": 4,
    "train.select": "last",
    "adapters.msa.widths": [64, 64, 32, 32, 16, 16],
}


@contextmanager
def peak_memory(device: torch.device, into: dict, key: str):
    """Record the peak GPU memory (GiB) of the block as ``into[key]`` (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    yield
    if device.type == "cuda":
        torch.cuda.synchronize()
        into[key] = torch.cuda.max_memory_allocated(device) / 2**30


def smoke(paths: Paths, device: torch.device, quick: bool) -> dict:
    """The offline pipeline on ``device``: inputs, a short training and the evaluate stage; returns its figures."""
    overrides = SMOKE | ({"data.synthetic.images": 6, "train.epochs": 1} if quick else {})
    params = load_params(REPO / "params.yaml", overrides | {"runtime.device": device.type})
    start = time.perf_counter()
    build_inputs(params, paths)
    inputs_s = time.perf_counter() - start
    start = time.perf_counter()
    summary = train_model(params, paths, resume_key=None, progress=False, device=device)
    train_s = time.perf_counter() - start
    metrics = evaluate_checkpoint(params, paths, device=device, progress=False)
    values = [v for v in metrics.values() if isinstance(v, int | float)]  # the model's (the baseline's are nested)
    if not values or not all(np.isfinite(values)):
        raise RuntimeError(f"the smoke run's metrics are not finite: {metrics}")
    return {"build_inputs_s": inputs_s, "train_s": train_s, "kept_epoch": summary["best_epoch"], "metrics": metrics}


def msa_training(paths: Paths, device: torch.device, steps: int, quick: bool) -> dict:
    """Images/s of the published MSA's training step with AMP (flip average and one pass), its FLOPs per image,
    the train loader's images/s at the default workers, their ratio and the peak memory."""
    overrides = OFFLINE | {"train.preset": "published", "runtime.device": device.type}
    if quick:
        overrides |= {"adapters.msa.widths": [64, 64, 32, 32, 16, 16], "train.preset": "custom", "train.batch_size": 2}
    params = load_params(REPO / "params.yaml", overrides)
    run = build_run(params, paths)
    model = build_phase_model(params, run, 0, params.adapter_config.phases()[-1]).to(device)
    settings = training_settings(params, "")
    amp = settings.amp and device.type == "cuda"
    workers = loader_workers(params.runtime.num_workers)
    job = SimpleNamespace(  # what train_loader and training_prediction read of a training Job
        train_set=run.train_set, settings=settings, num_workers=workers, seed=0, phase_index=0, model=model
    )
    loader = train_loader(job, device)
    next(iter(loader))  # workers started
    start, loaded = time.perf_counter(), 0
    batches = []
    for batch in loader:
        batches.append(batch)
        loaded += len(batch["index"])
    loader_ips = loaded / (time.perf_counter() - start)
    batch = to_device(batches[0], device)
    size = run.train_set.image_size
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    figures: dict = {"parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    figures |= {"batch_size": len(batch["index"]), "amp": amp, "loader_workers": workers}
    generator = torch.Generator().manual_seed(0)
    for flip in ("average", "random"):
        job.settings = settings.model_copy(update={"flip": flip})

        def step():
            with autocast(device, amp):
                pred = training_prediction(job, batch, generator)
            loss = run.loss(upsample_to(pred, size), batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        step()  # warm-up (cuDNN's kernel choice, allocator)
        with peak_memory(device, figures, f"peak_gib_flip_{flip}"):
            seconds = seconds_per_call(step, steps=steps, device=device)
        figures[f"images_per_s_flip_{flip}"] = len(batch["index"]) / seconds
        if flip == "average":
            with FlopCounterMode(display=False) as counter:
                step()
            figures["train_tflop_per_image_flip_average"] = counter.get_total_flops() / len(batch["index"]) / 1e12
    figures["loader_images_per_s"] = loader_ips
    figures["loader_to_model_ratio"] = loader_ips / figures["images_per_s_flip_average"]
    figures["sustained_tflops"] = figures["train_tflop_per_image_flip_average"] * figures["images_per_s_flip_average"]
    return figures


def features(rgb: np.ndarray, device: torch.device, repeats: int) -> dict:
    """Images/s of CLIP RN50 (random weights) on each image and its mirror under float16 autocast."""
    backbone = build_clip_backbone(model="RN50-quickgelu").to(device).eval()
    images = preprocess(torch.from_numpy(rgb)).to(device)
    layers = ("layer2", "layer3", "layer4")

    def one_pass():
        with torch.no_grad(), autocast(device):
            for i in range(len(images)):
                x = images[i : i + 1]
                backbone.forward_features(torch.cat([x, x.flip(-1)]), layers)

    one_pass()
    figures: dict = {}
    with peak_memory(device, figures, "peak_gib"):
        seconds = seconds_per_call(one_pass, steps=repeats, device=device)
    return figures | {"images_per_s": len(images) / seconds}


def sam(rgb: np.ndarray, device: torch.device, points_per_side: int) -> dict:
    """SAM ViT-B (seeded random weights): image-encoder and automatic-mask-generator seconds per image."""
    from depthcore.features.segments import SamSegmenter
    from depthcore.models.backbones.sam import build_sam

    model = build_sam(model="vit_b", init_seed=0).to(device)
    cfg = load_params(REPO / "params.yaml", {"sam.points_per_side": points_per_side}).sam
    segmenter = SamSegmenter(model, cfg)
    predictor = segmenter.generator.predictor
    predictor.set_image(rgb[0])  # warm-up
    figures: dict = {"points_per_side": points_per_side}
    with peak_memory(device, figures, "peak_gib"):
        encoder = seconds_per_call(lambda: predictor.set_image(rgb[0]), steps=2, device=device)
        start = time.perf_counter()
        masks = len(segmenter.masks(rgb[0]))
        if device.type == "cuda":
            torch.cuda.synchronize()
        generator = time.perf_counter() - start
    return figures | {"encoder_s_per_image": encoder, "generator_s_per_image": generator, "masks": masks}


def projection(results: dict) -> dict:
    """Projected GPU hours of the NYUv2 work from the figures measured here."""
    hours = {
        "features_h": NYU_IMAGES / results["features"]["images_per_s"] / 3600,
        "sam_segments_h_lower_bound": NYU_IMAGES * results["sam_vit_b"]["generator_s_per_image"] / 3600,
    }
    grid = json.loads((REPO / "benchmarks/results/paper.json").read_text())
    rate = results["msa_training"]["sustained_tflops"] * 1e12  # FLOP/s the published MSA's step sustains here
    hours["paper_grid_h"] = grid["total_pflop"] * 1e15 / rate / 3600
    hours["assumption"] = (
        "grid FLOPs from benchmarks/results/paper.json (FlopCounterMode per row type, one pass per image) run at the "
        "published MSA's measured sustained rate; the flip average doubles the training FLOPs of every row"
    )
    hours["paper_grid_h_flip_average"] = 2 * hours["paper_grid_h"]
    return hours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cuda (default) or a cpu dry run")
    parser.add_argument("--quick", action="store_true", help="fewer images and steps, narrow MSA (a dry run)")
    parser.add_argument("--steps", type=int, default=5, help="timed MSA training steps (default 5)")
    parser.add_argument("--points-per-side", type=int, default=16, help="SAM's prompt grid for the timing")
    args = parser.parse_args()
    device = select_device(args.device)  # refuses cuda that torch cannot use, saying why
    results: dict = {"device": describe_device(device), "quick": args.quick, "date": time.strftime("%Y-%m-%d")}
    print(results["device"], flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        paths = Paths().under(tmp)
        with peak_memory(device, results, "smoke_peak_gib"):
            results["smoke"] = smoke(paths, device, args.quick)
        print(f"smoke: {json.dumps(results['smoke'])}", flush=True)
        steps = 1 if args.quick else args.steps
        results["msa_training"] = msa_training(paths, device, steps, args.quick)
        print(f"msa training: {json.dumps(results['msa_training'])}", flush=True)
        rgb = Store(paths.dataset).read("rgb", slice(0, 2 if args.quick else 8))
    results["features"] = features(rgb, device, repeats=1 if args.quick else 3)
    print(f"clip features: {json.dumps(results['features'])}", flush=True)
    results["sam_vit_b"] = sam(rgb, device, 4 if args.quick else args.points_per_side)
    print(f"sam vit_b: {json.dumps(results['sam_vit_b'])}", flush=True)
    results["projected_gpu_hours"] = projection(results)
    results["wall_s"] = time.perf_counter() - started
    print(f"projected: {json.dumps(results['projected_gpu_hours'])}; wall {results['wall_s']:.0f} s", flush=True)
    out = RESULTS.with_name("gpu_dry_run.json") if args.quick else RESULTS
    write_json_atomic(out, results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
