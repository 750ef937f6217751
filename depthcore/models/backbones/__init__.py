"""Frozen foundation models: the CLIP backbone (and its shallow end) and SAM."""
