"""The pipeline up to training without DVC: every artifact training reads, built in dependency order
by the same functions the stages call (no resuming). For tests, benchmarks and notebooks; ``dvc repro``
is the way to run it for real (cached, resumable)."""

from __future__ import annotations

from depthcore.data.pairs import write_pairs
from depthcore.data.prepare import fetch_data, prepare_dataset
from depthcore.data.splits import write_validation_split
from depthcore.features import cache_clip_features
from depthcore.models.clip_weights import fetch_clip_weights
from depthcore.models.depthclip import write_head
from depthcore.models.sam import fetch_sam_weights
from depthcore.paths import Paths
from depthcore.segments import run_segments
from depthcore.zeroshot import run_zeroshot


def build_inputs(params, paths: Paths) -> Paths:
    """Run fetch_data .. segments and pairs for ``params`` into ``paths``; returns ``paths``."""
    fetch_data(params.data, paths.raw, key=None, progress=False)
    prepare_dataset(params.data.source, paths.raw, paths.dataset, key=None, progress=False)
    write_validation_split(
        paths.dataset, paths.split, val_fraction=params.data.val_fraction, seed=params.data.split_seed
    )
    fetch_clip_weights(params.clip, paths.clip_weights, progress=False)
    fetch_sam_weights(params.sam, paths.sam_weights, progress=False)
    cache_clip_features(
        paths.clip_weights,
        paths.dataset,
        paths.clip_features,
        paths.clip_shallow,
        layers=params.clip.cache_layers,
        key=None,
        batch_size=params.runtime.clip_batch_size,
    )
    write_head(paths.clip_weights, params.depthclip, paths.clip_head)
    run_zeroshot(paths, params.eval, key=None)
    run_segments(params, paths, key=None)
    write_pairs(params.ssl, paths.dataset, paths.pairs, key=None, progress=False)
    return paths
