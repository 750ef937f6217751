"""Cost of the paper grid: seconds per epoch per row type, and the projected wall time of the whole grid
(every computed row of paper/rows.yaml x paper.seeds) on NYUv2.

For each distinct training setting among the rows (adapter, its settings, loss), the published model is
built as the train stage builds it, on a small offline pipeline, and timed for a few optimizer steps
(forward + loss + backward + step) at the NYUv2 crop; its FLOPs per training image are counted with
torch's FlopCounterMode. The projection multiplies by the published presets' epochs (two stages for
coarse/refine), NYUv2's training images (795 less the val carve) and the seeds, plus one prediction pass
over the 654 test images per run:

- CPU: measured here;
- GPU: measured when a CUDA device is present; otherwise not measured, and the FLOP count is divided by an
  assumed sustained rate (--assumed-tflops, printed as an assumption, never as a measurement).

Usage: python benchmarks/paper.py [--images 6] [--steps 2]
Writes benchmarks/results/paper.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from train import seconds_per_call  # benchmarks/train.py: this script's folder is on sys.path

from depthcore.config.offline import OFFLINE as OFFLINE_SWITCHES
from depthcore.config.params import load_params
from depthcore.config.paths import Paths
from depthcore.device import default_device
from depthcore.models.predict import to_device, upsample_to
from depthcore.paper.rows import load_rows, row_params
from depthcore.pipeline.build import build_inputs
from depthcore.training.run import build_phase_model, build_run
from depthcore.training.settings import training_settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "paper.json"
NYU_TRAIN, NYU_TEST = 795, 654
OFFLINE = OFFLINE_SWITCHES | {
    "data.synthetic.views_per_room": 1,
    "segments.method": "gt",  # the rows' segments come from SAM on NYUv2; here any map of the same shape
}


def row_type(params) -> str:
    """What decides a row's cost: the adapter, its settings and whether the loss warps a second view."""
    return json.dumps(
        {
            "adapter": params.adapter,
            "settings": params.adapter_config.to_dict(),
            "second_view": params.loss_config.needs_pairs,
        },
        sort_keys=True,
    )


def time_step(params, paths: Paths, *, steps: int, device: torch.device) -> tuple[float, float]:
    """(seconds per training image, FLOPs per training image) of the run ``params`` describes."""
    run = build_run(params, paths)
    model = build_phase_model(params, run, 0, params.adapter_config.phases()[-1]).to(device)  # the whole model
    loss_fn = run.loss
    batch = to_device(next(iter(torch.utils.data.DataLoader(run.train_set, batch_size=1))), device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6)

    def step():
        loss = loss_fn(upsample_to(model(batch).float(), run.train_set.image_size), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step()  # also the warm-up
    return seconds_per_call(step, steps=steps, device=device), float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--assumed-tflops", type=float, default=200.0, help="sustained GPU rate when not measured")
    args = parser.parse_args()

    base = load_params(REPO / "params.yaml")
    offline = load_params(REPO / "params.yaml", OFFLINE | {"data.synthetic.images": args.images})
    rows = load_rows(REPO / "paper/rows.yaml")
    seeds = len(base.paper.seeds)
    train_images = round(NYU_TRAIN * (1 - base.data.val_fraction))
    device = default_device()
    types: dict[str, dict] = {}
    for row_id, row in rows.items():
        if row.runs and row.kind == "train":
            params = row_params(offline, row_id, row)  # the row's settings over the offline data
            epochs = sum(training_settings(params, phase.name).epochs for phase in params.adapter_config.phases())
            types.setdefault(row_type(params), {"rows": [], "params": params, "epochs": epochs})["rows"].append(row_id)

    results = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "seeds": seeds,
        "nyuv2_train_images": train_images,
        "row_types": [],
    }
    total_s, total_flops = 0.0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_inputs(offline, Paths().under(tmp))  # every run reads these (rows' variants cost the same)
        for entry in types.values():
            params = entry["params"]
            seconds, flops = time_step(params, paths, steps=args.steps, device=device)
            runs = len(entry["rows"]) * seeds
            images = runs * (entry["epochs"] * train_images + NYU_TEST)  # the test pass: ~1/3 of a train step
            total_s += images * seconds
            total_flops += images * flops
            results["row_types"].append(
                {
                    "rows": entry["rows"],
                    "adapter": params.adapter,
                    "loss": params.loss,
                    "epochs": entry["epochs"],
                    "seconds_per_image": seconds,
                    "seconds_per_epoch": seconds * train_images,
                    "train_tflop_per_image": flops / 1e12,
                    "runs": runs,
                }
            )
            print(
                f"{params.adapter:13s} {params.loss:4s} x{runs:2d} runs: {seconds:7.3f} s/image, "
                f"{seconds * train_images / 3600:6.2f} h/epoch, {flops / 1e12:6.3f} TFLOP/image, {entry['rows']}"
            )
    key = "gpu_measured_hours" if device.type == "cuda" else "cpu_measured_hours"
    results[key] = total_s / 3600
    results["total_pflop"] = total_flops / 1e15
    if device.type != "cuda":
        results["gpu_estimated_hours"] = total_flops / (args.assumed_tflops * 1e12) / 3600
        results["gpu_estimate_assumption"] = f"{args.assumed_tflops} TFLOP/s sustained (not measured)"
    print(json.dumps({k: v for k, v in results.items() if k != "row_types"}, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
