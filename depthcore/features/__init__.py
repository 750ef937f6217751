"""The caching stages: multi-scale CLIP features, the DepthCLIP head, zero-shot depth and segments."""
