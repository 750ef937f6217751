"""Depth adapters on cached CLIP features: one module each, built by name through the registry."""

from depthcore.models.adapters.base import AdapterContext, DepthAdapter, clip_key
from depthcore.models.adapters.registry import ADAPTERS, build_adapter

__all__ = ["ADAPTERS", "AdapterContext", "DepthAdapter", "build_adapter", "clip_key"]
