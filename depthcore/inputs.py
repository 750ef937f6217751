"""Which artifacts a run reads: the stores behind each batch key, and the chosen adapter's and loss's needs."""

from __future__ import annotations

from pathlib import Path

from depthcore.data.training import store_of
from depthcore.losses import build_loss
from depthcore.models.adapters import ADAPTERS
from depthcore.paths import Paths


def store_paths(paths: Paths) -> dict[str, Path]:
    """Store name (as in :func:`depthcore.data.training.store_of`) -> path."""
    return {
        "dataset": paths.dataset,
        "features": paths.clip_features,
        "zeroshot": paths.zeroshot,
        "segments": paths.segments,
    }


def needed_inputs(params, paths: Paths) -> list[Path]:
    """The artifacts the chosen adapter and loss read (what training and evaluation depend on).

    What an adapter reads is said by its settings class, registered with the adapter."""
    cfg = ADAPTERS[params.adapter].config.model_validate(params.adapter_config.to_dict())
    keys = cfg.batch_keys() + build_loss(params.loss).fields
    stores = store_paths(paths)
    needed = [paths.dataset, paths.split, *(stores[store_of(key)] for key in keys)]
    if cfg.needs_head():
        needed.append(paths.clip_head)
    return sorted(set(needed))
