"""Data sources (NYUv2, synthetic rooms), zarr stores and torch datasets. Knows nothing of models."""
