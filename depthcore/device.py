"""Where tensors run: the GPU when one is available, float16 autocast there only."""

from __future__ import annotations

import torch


def default_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device, enabled: bool = True):
    """float16 autocast on CUDA when ``enabled``; a disabled (no-op) context on any other device."""
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=enabled and device.type == "cuda")
