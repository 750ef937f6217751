"""Where tensors run, and how that is chosen and reported.

:func:`select_device` turns ``runtime.device`` (``auto`` | ``cuda`` | ``cpu``) into a torch device: ``auto`` is
CUDA when torch can use a GPU, else the CPU; ``cuda`` that torch cannot use is refused before any work, with the
reason (:func:`cuda_problem`: a CPU-only torch build, every GPU hidden, no NVIDIA driver, a driver too old for
this torch build's CUDA) and the fix. :func:`describe_device` is the one line every compute stage prints.
float16 autocast runs on CUDA only; inference runs one image at a time (:func:`per_image`), so that no output
depends on how images were batched."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from depthcore.errors import DepthcoreError

DeviceName = Literal["auto", "cuda", "cpu"]
DEVICE_NAMES: tuple[str, ...] = ("auto", "cuda", "cpu")
DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")  # written by the NVIDIA kernel module (Linux)
# The oldest Linux driver each CUDA major release runs on (NVIDIA's CUDA toolkit release notes: minor-version
# compatibility). A torch build for CUDA X needs at least MIN_DRIVER[X].
MIN_DRIVER: dict[int, tuple[int, ...]] = {11: (450, 80, 2), 12: (525, 60, 13), 13: (580, 65, 6)}
MAX_AUTO_WORKERS = 8  # per loader: more rarely helps one GPU, and each worker holds its own store handles
OLDER_BUILDS = "https://pytorch.org/get-started/previous-versions/"


class DeviceError(DepthcoreError, RuntimeError):
    """The requested device cannot be used; the message says why and how to fix it."""


@dataclass(frozen=True)
class CudaFacts:
    """What decides whether torch can use a GPU here: the build's CUDA version (None for a CPU-only build),
    ``CUDA_VISIBLE_DEVICES`` (None when unset), the NVIDIA driver's version (None without a driver), whether
    torch reports CUDA available, and the warning torch gave when it could not initialise CUDA."""

    build_cuda: str | None
    visible: str | None
    driver: tuple[int, ...] | None
    available: bool
    init_warning: str | None = None


def _driver_version(path: Path = DRIVER_VERSION_FILE) -> tuple[int, ...] | None:
    """The NVIDIA kernel module's version (e.g. (535, 104, 5)) from ``path``; None when no driver is loaded."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for word in text.split():
        parts = word.split(".")
        if len(parts) >= 2 and all(p.isdigit() for p in parts):
            return tuple(int(p) for p in parts)
    return None


def cuda_facts() -> CudaFacts:
    """:class:`CudaFacts` of this machine and torch build."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    messages = [str(w.message) for w in caught if "CUDA" in str(w.message) or "driver" in str(w.message)]
    return CudaFacts(
        build_cuda=torch.version.cuda,
        visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
        driver=_driver_version(),
        available=available,
        init_warning=messages[0] if messages else None,
    )


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(f"{v:02d}" if i == 2 else str(v) for i, v in enumerate(version))


def cuda_problem(facts: CudaFacts) -> str | None:
    """Why torch cannot use a GPU, with the fix, as one sentence; None when it can."""
    if facts.available:
        return None
    build = f"torch {torch.__version__}"
    if facts.build_cuda is None:
        return (
            f"{build} is a CPU-only build: install a CUDA build of torch (pip install torch torchvision picks one "
            "on Linux x86-64) or set runtime.device: cpu"
        )
    if facts.visible is not None and not [d for d in facts.visible.split(",") if d.strip() and d.strip() != "-1"]:
        return f"CUDA_VISIBLE_DEVICES={facts.visible!r} hides every GPU: unset it or name a GPU index"
    if facts.driver is None:
        return (
            f"no NVIDIA driver is loaded ({DRIVER_VERSION_FILE} is missing): install the NVIDIA driver (for {build}, "
            f"built for CUDA {facts.build_cuda}, version {_min_driver_text(facts.build_cuda)} or newer) or set "
            "runtime.device: cpu"
        )
    needed = MIN_DRIVER.get(int(facts.build_cuda.split(".")[0]))
    if needed is not None and facts.driver < needed:
        return (
            f"the NVIDIA driver {_dotted(facts.driver)} is too old for {build}, built for CUDA {facts.build_cuda} "
            f"(needs {_dotted(needed)} or newer): update the driver, or install a torch build for an older CUDA "
            f"that this driver runs (e.g. pip install torch torchvision --index-url "
            f"https://download.pytorch.org/whl/cu118 for drivers from 450.80.02; see {OLDER_BUILDS})"
        )
    detail = f" ({facts.init_warning.strip().splitlines()[0]})" if facts.init_warning else ""
    return (
        f"{build} (CUDA {facts.build_cuda}) found no usable GPU with driver {_dotted(facts.driver)}{detail}: check "
        "nvidia-smi, or set runtime.device: cpu"
    )


def _min_driver_text(build_cuda: str) -> str:
    needed = MIN_DRIVER.get(int(build_cuda.split(".")[0]))
    return _dotted(needed) if needed else "a matching"


def select_device(name: str = "auto", facts: CudaFacts | None = None) -> torch.device:
    """The device ``runtime.device`` names (``auto`` | ``cuda`` | ``cpu``, or ``cuda:N``). ``cuda`` that torch
    cannot use raises DeviceError saying why and how to fix it; ``auto`` falls back to the CPU then (and
    :func:`describe_device` says why). On CUDA, cuDNN picks its fastest kernels (``cudnn.benchmark``)."""
    if name not in DEVICE_NAMES and not name.startswith("cuda:"):
        raise DeviceError(f"runtime.device {name!r}: expected one of {list(DEVICE_NAMES)} (or cuda:N)")
    if name == "cpu":
        return torch.device("cpu")
    facts = facts or cuda_facts()
    problem = cuda_problem(facts)
    if problem is not None:
        if name == "auto":
            return torch.device("cpu")
        raise DeviceError(f"runtime.device {name}: the GPU cannot be used: {problem}")
    torch.backends.cudnn.benchmark = True
    return torch.device("cuda" if name == "auto" else name)


def describe_device(device: torch.device, facts: CudaFacts | None = None) -> str:
    """One line: the device (GPU name and memory, or CPU threads) and the torch, CUDA, cuDNN and driver
    versions; on the CPU with a GPU driver present, why torch cannot use it."""
    versions = f"torch {torch.__version__}"
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        driver = _driver_version()
        return (
            f"device cuda:{index}: {props.name} ({props.total_memory / 2**30:.0f} GiB), {versions}, CUDA "
            f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
            + (f", driver {_dotted(driver)}" if driver else "")
        )
    line = f"device cpu ({torch.get_num_threads()} threads), {versions}"
    facts = facts or cuda_facts()
    if facts.driver is not None and (problem := cuda_problem(facts)) is not None:
        line += f"; an NVIDIA driver is loaded but not used: {problem}"
    return line


def loader_workers(setting: int | str) -> int:
    """DataLoader worker processes for ``runtime.num_workers``: the number itself, or for ``auto`` one per CPU
    this process may use, less one for the main process, at most :data:`MAX_AUTO_WORKERS`."""
    if setting != "auto":
        return int(setting)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(MAX_AUTO_WORKERS, cpus - 1))


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
