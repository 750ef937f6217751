"""Where tensors run: the GPU when one is available, float16 autocast there only; and inference one image at
a time (:func:`per_image`), so that no output depends on how images were batched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def default_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device, enabled: bool = True):
    """float16 autocast on CUDA when ``enabled``; a disabled (no-op) context on any other device."""
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=enabled and device.type == "cuda")


def per_image(fn: Callable[[Any], Any], batch: torch.Tensor | dict[str, torch.Tensor]) -> Any:
    """``fn`` on each image of ``batch`` alone (a B x ... tensor, or a dict of them: item i is ``[i:i+1]`` of
    each), the results (tensors, or dicts of tensors) concatenated along axis 0 in image order.

    Kernels choose their blocking by batch size, so batched arithmetic rounds differently (~1e-7) for another
    batch size; computed one image at a time, a stored output cannot depend on the runtime batch sizes."""
    size = len(batch) if isinstance(batch, torch.Tensor) else len(next(iter(batch.values())))
    if isinstance(batch, torch.Tensor):
        results = [fn(batch[i : i + 1]) for i in range(size)]
    else:
        results = [fn({key: value[i : i + 1] for key, value in batch.items()}) for i in range(size)]
    if isinstance(results[0], dict):
        return {key: torch.cat([r[key] for r in results]) for key in results[0]}
    return torch.cat(results)
