"""The one seeding point of a training run: an independent random stream per purpose.

Every random choice of a run is drawn from a stream named by the run's ``seed``, a *purpose* and the
integers that locate the draw (phase, epoch, image), e.g. ``stream_seed(seed, "shuffle", phase, epoch)``.
Streams of different purposes or locations are independent (NumPy's SeedSequence hashes the whole key),
so the colour jitter of one epoch never repeats the shuffle of another, and any draw can be made again
alone: a resumed run, or a DataLoader worker, draws exactly what an uninterrupted run draws.

Purposes: ``init`` (model weights, through torch's global generator), ``shuffle`` (sample order),
``flip`` (per-image horizontal flips), ``jitter`` (per-image colour scale), ``crop`` (per-image offset of the
random crop that training with live features takes).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

PURPOSES = ("init", "shuffle", "flip", "jitter", "crop")
_SEED_BITS = 63  # torch.Generator.manual_seed takes a non-negative int64


def _purpose_code(purpose: str) -> int:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown random stream {purpose!r}; valid purposes are {list(PURPOSES)}")
    return int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "little")


def stream_seed(seed: int, purpose: str, *where: int) -> int:
    """A 63-bit seed of the stream (``seed``, ``purpose``, ``where``...); ``seed`` may be any int."""
    key = [int(seed) % 2**64, _purpose_code(purpose), *(int(w) % 2**64 for w in where)]
    (state,) = np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)
    return int(state) >> (64 - _SEED_BITS)


def torch_generator(seed: int, purpose: str, *where: int) -> torch.Generator:
    """A CPU torch.Generator on the stream (``seed``, ``purpose``, ``where``...)."""
    return torch.Generator().manual_seed(stream_seed(seed, purpose, *where))


def numpy_generator(seed: int, purpose: str, *where: int) -> np.random.Generator:
    """A NumPy Generator on the stream (``seed``, ``purpose``, ``where``...)."""
    return np.random.default_rng(stream_seed(seed, purpose, *where))


def seed_global(seed: int, purpose: str, *where: int) -> None:
    """Seed torch's global generators (CPU and CUDA), which module constructors draw from, on the stream."""
    torch.manual_seed(stream_seed(seed, purpose, *where))
