"""The pipeline up to training without DVC: every artifact training reads, built in dependency order by the
same functions the stage scripts call (no resuming). For tests, benchmarks and notebooks; ``dvc repro`` is the
way to run it for real (cached, resumable)."""

from __future__ import annotations

from depthcore.config.paths import Paths
from depthcore.data.pairs import write_pairs
from depthcore.data.prepare import fetch_data, prepare_dataset
from depthcore.data.splits import write_validation_split
from depthcore.features.backbone import cache_features
from depthcore.features.head import write_head
from depthcore.features.segments import write_segments
from depthcore.features.zeroshot import run_zeroshot
from depthcore.weights.backbone import fetch_backbone_weights, write_selected
from depthcore.weights.fetch_sam import fetch_sam_weights


def build_inputs(params, paths: Paths) -> Paths:
    """Run fetch_data .. zeroshot (the stages training reads from) for ``params`` into ``paths``; returns ``paths``."""
    fetch_data(params.data, paths.raw, key=None, progress=False)
    prepare_dataset(params.data.source, paths.raw, paths.dataset, key=None, progress=False)
    write_validation_split(
        paths.dataset, paths.split, val_fraction=params.data.val_fraction, seed=params.data.split_seed
    )
    selected = write_selected(params, paths.backbone_settings)
    fetch_backbone_weights(
        selected,
        paths.backbone_weights,
        local_dir=paths.local_backbone_weights,
        downloads=paths.weights_downloads,
        progress=False,
    )
    fetch_sam_weights(params.sam, paths.sam_weights, local_dir=paths.local_sam_weights, progress=False)
    cache_features(
        paths.backbone_weights,
        paths.dataset,
        paths.features,
        paths.clip_shallow,
        layers=tuple(selected["layers"]),
        key=None,
        batch_size=params.runtime.features_batch_size,
    )
    write_head(paths.backbone_weights, params.depthclip, paths.clip_head)
    run_zeroshot(paths, key=None, batch_size=params.runtime.eval_batch_size, progress=False)
    write_segments(
        params.segments,
        params.sam,
        paths.dataset,
        paths.segments,
        weights_dir=paths.sam_weights,
        key=None,
        points_per_batch=params.runtime.sam_points_per_batch,
        progress=False,
    )
    write_pairs(params.pairs, paths.dataset, paths.pairs, key=None, progress=False)
    return paths
