"""DVC stage clip_features: dataset.zarr -> data/features/clip.zarr (frozen CLIP, image + mirror image)."""

from common import run

from depthcore.features import cache_clip_features


def main(stage):
    p, paths = stage.params, stage.paths
    out = cache_clip_features(
        paths.clip_weights,
        paths.dataset,
        paths.clip_features,
        layers=p.clip.cache_layers,
        key=stage.key,
        batch_size=p.runtime.clip_batch_size,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    run(main)
