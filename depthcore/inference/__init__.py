"""Live prediction on new images (``depthcore predict``): a trained checkpoint, or DepthCLIP zero-shot, with every
input the model read from the cache during training computed from the image itself."""
