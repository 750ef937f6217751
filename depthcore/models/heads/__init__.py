"""Heads that turn frozen features into depth without training: DepthCLIP."""
