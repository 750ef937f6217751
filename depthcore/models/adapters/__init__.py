"""Depth adapters on cached CLIP features: one module each, built by name through the registry."""
