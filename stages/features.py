"""DVC stage features: dataset.zarr -> data/features/backbone.zarr (the selected backbone's cached layers, image +
mirror image; with features: live only the zero-shot head's layer, training runs the backbone itself) and
data/features/clip_shallow.safetensors (the CLIP stem and layer1 weights adapters compute those layers with; for
another backbone, an artifact that names it and holds none)."""

from common import run

from depthcore.features.backbone import cache_features
from depthcore.weights.backbone import read_selected


def main(stage):
    p, paths = stage.params, stage.paths
    out = cache_features(
        paths.backbone_weights,
        paths.dataset,
        paths.features,
        paths.clip_shallow,
        layers=tuple(read_selected(paths.backbone_settings)["layers"]),
        key=stage.key,
        batch_size=p.runtime.features_batch_size,
        device=stage.device,
        live=p.features == "live",
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    run(main)
