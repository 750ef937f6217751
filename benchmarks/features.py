"""Benchmark the features stage and the zero-shot head that reads its cache.

Prints and writes benchmarks/results/features.json:

- feature extraction speed at 416 x 544 (images/s, each image also run mirrored), backbone only
  and end to end (preprocess + backbone + compress + write), on CPU and on CUDA when available;
- bytes per image on disk for every layer (both views), the compression ratio against raw float16,
  plain zstd for comparison, and the NYUv2-size store (1449 images) extrapolated for the default
  ``clip.cache_layers`` and for all five layers;
- zero-shot time per image from the cache versus recomputing the backbone, and their ratio;
- the cost of the crc32c checksum on every chunk: bytes per image and read time per image (all layers,
  both views) against a copy of the same store written without it, and their ratio.

Runs offline on rendered synthetic rooms with seeded random weights by default. Random-init
activations compress differently from pretrained ones (about half the values are exactly zero
after the ReLUs either way, but the magnitude distributions differ): treat the sizes as indicative
and rerun with ``--weights-dir data/weights/backbone`` (a ``fetch_backbone`` folder) on a machine with the weights.

    python benchmarks/features.py                # ~2 min on 2 CPU cores
    python benchmarks/features.py --images 8 --batch-size 4
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numcodecs
import numpy as np
import torch
import zarr

from depthcore.config.params import load_params
from depthcore.data.prepare import fetch_data, prepare_dataset
from depthcore.data.store import Store
from depthcore.features.backbone import FEATURE_COMPRESSOR, extract_features, preprocess
from depthcore.features.head import build_depthclip_head
from depthcore.geometry.frame import CLIP_LAYERS
from depthcore.models.backbones.clip import build_clip_backbone
from depthcore.models.heads.depthclip import zeroshot_depth
from depthcore.weights.clip import load_clip_backbone
from depthcore.weights.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]

NYU_IMAGES = 1449
SIZE_LIMIT_GB = 20.0
RESULTS = Path(__file__).parent / "results" / "features.json"


def _array_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "zarr.json")


def _time_backbone(backbone, rgb: np.ndarray, batch: int, device: torch.device, repeats: int) -> float:
    """Images per second of preprocess + backbone on the image and its mirror image."""
    backbone = backbone.to(device)
    x = preprocess(torch.from_numpy(rgb[:batch])).to(device)
    autocast = torch.autocast(device_type="cuda", dtype=torch.float16, enabled=device.type == "cuda")
    with torch.no_grad(), autocast:
        backbone.forward_features(torch.cat([x, x.flip(-1)]))  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            backbone.forward_features(torch.cat([x, x.flip(-1)]))
        if device.type == "cuda":
            torch.cuda.synchronize()
    return repeats * batch / (time.perf_counter() - start)


def _read_s_per_image(group: zarr.Group, n: int, repeats: int = 3) -> float:
    """Best of ``repeats`` of the seconds to read every array of ``group`` for one image (mean over n)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            for name in group.array_keys():
                group[name][i]
        best = min(best, (time.perf_counter() - start) / n)
    return best


def _checksum_cost(store: Path, plain_path: Path, n: int) -> dict:
    """Bytes and read time per image of ``store`` (crc32c on every chunk) against a copy without the checksum."""
    group = zarr.open_group(str(store), mode="r")
    plain = zarr.open_group(str(plain_path), mode="w")
    for name in group.array_keys():
        array = group[name]
        copy = plain.create_array(
            name=name,
            shape=array.shape,
            chunks=array.chunks,
            dtype=array.dtype,
            compressors=[FEATURE_COMPRESSOR],
            fill_value=0,
        )
        copy[...] = array[...]
    names = list(group.array_keys())
    extra = sum(_array_bytes(store / name) - _array_bytes(plain_path / name) for name in names) / n
    with_sum, without = _read_s_per_image(group, n), _read_s_per_image(plain, n)
    return {
        "layers": names,
        "checksum_bytes_per_image": extra,
        "read_s_per_image_with_crc32c": with_sum,
        "read_s_per_image_without": without,
        "read_time_ratio": with_sum / without,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--images", type=int, default=3, help="synthetic images to extract (default 3, the fewest rooms a split takes)"
    )
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--weights-dir", default=None, help="a fetch_backbone folder (default: seeded random RN50)")
    parser.add_argument("--repeats", type=int, default=1, help="timed backbone batches per device")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    images = max(args.images, 3)  # a split needs three rooms

    torch.set_grad_enabled(False)
    defaults = load_params(REPO / "params.yaml")
    default_layers = defaults.clip.cache_layers
    if args.weights_dir:
        backbone, weights = (
            load_clip_backbone(args.weights_dir),
            read_manifest(args.weights_dir, stage="fetch_backbone"),
        )
    else:
        backbone = build_clip_backbone(model=defaults.clip.model)
        weights = {"model": defaults.clip.model, "pretrained": "none", "init_seed": 0}
    results: dict = {
        "model": weights["model"],
        "weights": weights["pretrained"],
        "images": images,
        "batch_size": args.batch_size,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = load_params(
            REPO / "params.yaml",
            {
                "data.source": "synthetic",
                "data.synthetic.images": images,
                "data.synthetic.views_per_room": 1,
            },
        ).data
        fetch_data(data, tmp / "raw", key=None, progress=False)
        dataset = prepare_dataset("synthetic", tmp / "raw", tmp / "dataset.zarr", key=None, progress=False)
        rgb = Store(dataset).read("rgb")
        n = len(rgb)

        speed = {
            "cpu_backbone_images_per_s": _time_backbone(
                backbone, rgb, args.batch_size, torch.device("cpu"), args.repeats
            )
        }
        if torch.cuda.is_available():
            speed["cuda_backbone_images_per_s"] = _time_backbone(
                backbone, rgb, args.batch_size, torch.device("cuda"), max(args.repeats, 5)
            )
            speed["cuda_device"] = torch.cuda.get_device_name()
            backbone = backbone.cpu()
        start = time.perf_counter()
        store = extract_features(
            dataset,
            tmp / "backbone.zarr",
            backbone=backbone,
            weights=weights,
            layers=CLIP_LAYERS,
            key=None,
            batch_size=args.batch_size,
            device="cpu",
            progress=False,
        )
        speed["cpu_end_to_end_images_per_s"] = n / (time.perf_counter() - start)
        results["speed"] = speed

        group = Store(store).group
        layers = {}
        for name in CLIP_LAYERS:
            array = group[name]
            raw = int(np.prod(array.shape[1:])) * 2  # float16 bytes per image, both views
            disk = _array_bytes(store / name) / n
            sample = np.ascontiguousarray(array[0])
            zstd_only = len(numcodecs.Zstd(level=3).encode(sample.tobytes()))
            layers[name] = {
                "shape_per_image": list(array.shape[1:]),
                "raw_bytes_per_image": raw,
                "disk_bytes_per_image": disk,
                "compression_ratio": raw / disk,
                "plain_zstd_ratio": raw / zstd_only,
                "zero_fraction": float((sample == 0).mean()),
            }
        results["layers"] = layers

        def extrapolate(names) -> dict:
            raw = sum(layers[layer]["raw_bytes_per_image"] for layer in names) * NYU_IMAGES / 1e9
            disk = sum(layers[layer]["disk_bytes_per_image"] for layer in names) * NYU_IMAGES / 1e9
            return {
                "layers": list(names),
                "raw_GB": raw,
                "measured_compressed_GB": disk,
                "under_limit_uncompressed": raw < SIZE_LIMIT_GB,
                "under_limit_compressed": disk < SIZE_LIMIT_GB,
            }

        results["nyuv2_store"] = {"default": extrapolate(default_layers), "all_layers": extrapolate(CLIP_LAYERS)}
        results["checksum"] = _checksum_cost(store, tmp / "plain.zarr", n)

        head = build_depthclip_head(backbone=backbone, cfg=defaults.depthclip)
        start = time.perf_counter()
        for i in range(n):
            zeroshot_depth(head, torch.from_numpy(group["layer4"][i : i + 1]))
        cached = (time.perf_counter() - start) / n
        start = time.perf_counter()
        for i in range(n):
            x = preprocess(torch.from_numpy(rgb[i : i + 1]))
            layer4 = backbone.forward_features(torch.cat([x, x.flip(-1)]), ("layer4",))["layer4"]
            zeroshot_depth(head, layer4.unsqueeze(0))
        recomputed = (time.perf_counter() - start) / n
        results["zeroshot_s_per_image"] = {
            "from_cache": cached,
            "recompute_backbone": recomputed,
            "speedup": recomputed / cached,
        }

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
