"""Models: the frozen CLIP backbone wrapper, the DepthCLIP zero-shot head and the trainable adapters."""
