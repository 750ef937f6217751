"""Self-describing adapter checkpoints: safetensors weights + JSON metadata, no pickle.

A checkpoint holds the adapter's state dict and, in the safetensors header, the metadata needed to
rebuild it (adapter name and settings, the context it was built from, the identity of the CLIP
features it was trained on, and the attrs of the other computed inputs it reads: the zero-shot map's
head and CLIP weights, the segmenter and its settings, :func:`input_identity`) plus the run's record
(loss, seed, train settings, best epoch, val metrics, curves). The bytes are deterministic: a resumed
training writes exactly the checkpoint of an uninterrupted one, so DVC sees the same hash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from depthcore.data.batch import store_of
from depthcore.data.store import Store
from depthcore.errors import ConfigError, DepthcoreError
from depthcore.io import read_safetensors, write_safetensors_atomic
from depthcore.models.adapters.base import AdapterConfig, AdapterContext, DepthAdapter
from depthcore.models.adapters.registry import ADAPTERS, build_adapter

FORMAT_NAME = "depthcore-adapter"
FORMAT_VERSION = 3  # 3: records the computed inputs' identity (``inputs``), which live prediction rebuilds
FORMAT = f"{FORMAT_NAME}-{FORMAT_VERSION}"
FEATURE_IDENTITY_KEYS = ("weights", "crop", "normalisation")
COMPUTED_INPUT_STORES = ("zeroshot", "segments")  # besides the CLIP features: stores computed from the image


class CheckpointError(DepthcoreError, ValueError):
    """A checkpoint is unreadable, of another format or adapter, or does not fit the features."""


def save_checkpoint(path: Path | str, *, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Write the weights and ``meta`` (JSON-able) to ``path`` atomically."""
    tensors = {name: value.detach().cpu().contiguous() for name, value in state_dict.items()}
    return write_safetensors_atomic(path, tensors, {"format": FORMAT, **meta})


def load_checkpoint(path: Path | str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, state dict) of a depthcore checkpoint; CheckpointError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: run `dvc repro train` first")
    try:
        meta, state = read_safetensors(path)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc}); rerun `dvc repro train`") from exc
    found = str(meta.get("format", ""))
    if found != FORMAT:
        version = found.removeprefix(f"{FORMAT_NAME}-")
        if found.startswith(f"{FORMAT_NAME}-") and version.isdigit() and int(version) > FORMAT_VERSION:
            raise CheckpointError(
                f"{path} was written by a newer depthcore (checkpoint format {version}; this version reads "
                f"{FORMAT_VERSION}): upgrade depthcore (pip install -U depthcore, or git pull) to read it"
            )
        older = found.startswith(FORMAT_NAME)
        what = f"an older depthcore checkpoint ({found})" if older else "not a depthcore checkpoint"
        raise CheckpointError(f"{path} is {what}; this version reads {FORMAT}: retrain with `dvc repro train`")
    return meta, state


def feature_identity(attrs: Mapping[str, Any], layers: tuple[str, ...]) -> dict[str, Any]:
    """What the CLIP features an adapter reads depend on (from backbone.zarr attrs), for ``layers``."""
    out = {key: attrs.get(key) for key in FEATURE_IDENTITY_KEYS}
    out["layers"] = {name: attrs.get("layers", {}).get(name) for name in layers}
    return json.loads(json.dumps(out))


def input_identity(stores: Mapping[str, Path | str], keys: tuple[str, ...]) -> dict[str, Any]:
    """The attrs of each computed input store (zero-shot map, segments) that batch keys ``keys`` read, by store
    name (``stores``: name -> path, :func:`depthcore.data.batch.store_paths`)."""
    read = {store_of(key) for key in keys}
    return {name: Store(stores[name]).attrs for name in COMPUTED_INPUT_STORES if name in read}


def checkpoint_config(meta: Mapping[str, Any]) -> AdapterConfig:
    """The settings of the adapter a checkpoint holds (which say what it reads)."""
    name = meta["adapter"]
    try:
        plugin = ADAPTERS.get(name)
    except ConfigError:
        raise CheckpointError(f"the checkpoint holds adapter {name!r}, which this version does not have") from None
    return plugin.config.model_validate(meta["adapter_config"])


def build_from_checkpoint(
    meta: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    *,
    adapter: str | None = None,
    features_attrs: Mapping[str, Any] | None = None,
    image_size: tuple[int, int] | None = None,
) -> DepthAdapter:
    """The adapter a checkpoint holds, with its weights (strict).

    ``adapter``: the adapter the caller expects (params); ``features_attrs``: attrs of the backbone.zarr the
    model will read. A checkpoint of another adapter, or trained on other features, is refused. ``image_size``:
    build it to predict at this H x W instead of the crop it was trained on (full-frame evaluation; an adapter
    whose weights depend on the size, e.g. eigen's fully connected layer, is refused as not fitting).
    """
    name = meta["adapter"]
    if adapter is not None and name != adapter:
        raise CheckpointError(
            f"the checkpoint holds adapter {name!r} but params ask for {adapter!r}: rerun `dvc repro train` "
            f"(or set adapter: {name})"
        )
    cfg = checkpoint_config(meta)
    layers = cfg.cached_layers()
    if features_attrs is not None and layers:
        now = feature_identity(features_attrs, layers)
        if now != meta["features"]:
            diff = sorted(key for key in now if now[key] != meta["features"].get(key))
            raise CheckpointError(
                f"the checkpoint was trained on other CLIP features (differing: {diff}); its features: "
                f"{meta['features']}; the store's: {now}. Retrain with `dvc repro train`"
            )
    context = AdapterContext.from_description(meta["context"])
    if image_size is not None:
        context.image_size = tuple(image_size)
    model = build_adapter(name, cfg=cfg, context=context)
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit adapter {name!r}: {exc}") from exc
    return model
