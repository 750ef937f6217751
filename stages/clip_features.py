"""DVC stage clip_features: dataset.zarr -> data/features/clip.zarr (frozen CLIP, image + mirror image) and
data/features/clip_shallow.safetensors (the CLIP stem and layer1 weights adapters compute those layers with)."""

from common import run

from depthcore.features.clip import cache_clip_features


def main(stage):
    p, paths = stage.params, stage.paths
    out = cache_clip_features(
        paths.clip_weights,
        paths.dataset,
        paths.clip_features,
        paths.clip_shallow,
        layers=p.clip.cache_layers,
        key=stage.key,
        batch_size=p.runtime.clip_batch_size,
        device=stage.device,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    run(main)
