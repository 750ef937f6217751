"""Reading published weights files as tensors, whatever their format, without running any code they carry.

Formats (told apart by content, not by name):

- ``safetensors``: a JSON header and raw tensors (Hugging Face files, the fetch stage's own output);
- ``torchscript``: a TorchScript archive (OpenAI's ``RN50.pt`` / ``ViT-B-16.pt``): a zip of ``<name>/data.pkl`` (the
  module tree, pickled), ``<name>/data/<key>`` (raw storages) and ``<name>/code/`` (TorchScript source). Only
  ``data.pkl`` and the storages are read, by an unpickler that builds tensors and plain attribute records and refuses
  every other global; the code is never compiled or run. Each tensor attribute of the module tree is named by its
  dotted path (``visual.conv1.weight``): for a traced module, the attributes are exactly its parameters and buffers,
  so the result is its ``state_dict()``;
- ``torch``: ``torch.save`` of tensors and plain containers (zip or legacy pickle), read with
  ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from depthcore.io import CorruptFileError, UnsafeFileError, load_plain_torch
from depthcore.weights.manifest import WeightsError

SAFETENSORS = "safetensors"
TORCHSCRIPT = "torchscript"
TORCH = "torch"
FORMAT_NAMES = {
    SAFETENSORS: "a safetensors file",
    TORCHSCRIPT: "a TorchScript archive",
    TORCH: "a torch.save file",
}
SAFETENSORS_MAX_HEADER = 100 * 2**20  # the safetensors format caps its JSON header at 100 MB
KEYS_SHOWN = 4  # keys quoted when describing a file's contents


class WeightsFileError(WeightsError):
    """A weights file that cannot be read as tensors: missing, truncated, foreign, or a pickle that needs code."""


@dataclass(frozen=True)
class WeightsFile:
    """A weights file's tensors (name -> tensor, every leaf of the file's tree) and its ``format``."""

    tensors: dict[str, torch.Tensor]
    format: str

    def describe(self) -> str:
        """What the file looked like, for messages: its format, tensor count and first keys (in the file's order)."""
        keys = list(self.tensors)
        shown = ", ".join(keys[:KEYS_SHOWN]) + (", ..." if len(keys) > KEYS_SHOWN else "")
        return f"{FORMAT_NAMES[self.format]} of {len(keys)} tensors ({shown})"


def read_weights_file(path: Path | str) -> WeightsFile:
    """Every tensor of the weights file at ``path`` (see the module docstring for the formats); WeightsFileError
    naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file {path} does not exist or is not a file")
    kind = sniff_format(path)
    try:
        if kind == SAFETENSORS:
            from safetensors.torch import load_file

            tensors = load_file(str(path))
        elif kind == TORCHSCRIPT:
            tensors = read_torchscript_tensors(path)
        else:
            tensors = flatten_tensors(unwrap_checkpoint(load_plain_torch(path)))
    except (UnsafeFileError, CorruptFileError, WeightsFileError) as exc:
        raise WeightsFileError(str(exc)) from None
    except Exception as exc:  # truncated or foreign files
        raise WeightsFileError(
            f"{path} cannot be read as {FORMAT_NAMES[kind]} ({type(exc).__name__}: {exc}); it may be truncated: "
            "download it again"
        ) from None
    if not tensors:
        raise WeightsFileError(f"{path} holds no tensors")
    return WeightsFile(tensors, kind)


def sniff_format(path: Path) -> str:
    """``safetensors`` (an 8-byte little-endian header length, then a JSON object), ``torchscript`` (a zip with a
    ``constants.pkl`` or ``code/`` entry) or ``torch`` (anything else: torch.load decides)."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) == 9 and head[8:9] == b"{" and 0 < struct.unpack("<Q", head[:8])[0] <= SAFETENSORS_MAX_HEADER:
        return SAFETENSORS
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
            return TORCHSCRIPT
    return TORCH


def unwrap_checkpoint(tree: Any) -> Any:
    """A training checkpoint's model weights: its top-level ``state_dict`` or ``model`` mapping (nested once
    more at most), else the checkpoint itself."""
    for key in ("state_dict", "model", "state_dict"):
        if isinstance(tree, dict) and isinstance(tree.get(key), dict):
            tree = tree[key]
    return tree


def flatten_tensors(tree: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint's nested dicts, keyed by their dotted paths (a flat state dict stays as
    it is); other leaves (numbers, strings: training metadata) are dropped."""
    if isinstance(tree, torch.Tensor):
        return {prefix.removesuffix("."): tree}
    if isinstance(tree, dict):
        out: dict[str, torch.Tensor] = {}
        for key, value in tree.items():
            out |= flatten_tensors(value, f"{prefix}{key}.")
        return out
    return {}


# ------------------------------------------------------------------------------------------ TorchScript
class _ScriptObject:
    """A TorchScript object as pickled: its attributes (``state``, set by the pickle's BUILD)."""

    state: dict[str, Any]

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = state if isinstance(state, dict) else {}


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, requires_grad=False, hooks=None, *rest):
    """torch._utils._rebuild_tensor_v2 on a flat storage tensor: a copy of the strided view."""
    return storage.as_strided(tuple(size), tuple(stride), offset).clone()


def _identity(value: Any, *rest: Any) -> Any:
    return value


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.jit._pickle", "restore_type_tag"): _identity,
    **{("torch.jit._pickle", f"build_{kind}list"): _identity for kind in ("int", "double", "bool", "tensor")},
}
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl``: tensors from the archive's storages, ``__torch__`` objects as plain
    attribute records; any other global is refused."""

    def __init__(self, archive: zipfile.ZipFile, root: str, path: Path):
        super().__init__(archive.open(f"{root}/data.pkl"))
        self.archive, self.root, self.path = archive, root, path
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise WeightsFileError(
            f"{self.path}: its TorchScript data needs {module}.{name}, which depthcore does not run; it is not a "
            "module archive of tensors (such as OpenAI's CLIP .pt files)"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise WeightsFileError(f"{self.path}: unexpected storage reference {pid!r} in its TorchScript data")
        _, dtype, key, _, numel = pid
        if key not in self.storages:
            raw = bytearray(self.archive.read(f"{self.root}/data/{key}"))
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            if flat.numel() != numel:
                raise WeightsFileError(f"{self.path}: storage {key} holds {flat.numel()} values, not {numel}")
            self.storages[key] = flat
        return self.storages[key]


def read_torchscript_tensors(path: Path | str) -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript archive's module tree, named by attribute path, read without running its code
    (see the module docstring); WeightsFileError for a big-endian or malformed archive."""
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        roots = sorted({name.split("/")[0] for name in archive.namelist() if name.endswith("/data.pkl")})
        if len(roots) != 1:
            raise WeightsFileError(f"{path}: a TorchScript archive has one <name>/data.pkl, found {len(roots)}")
        root = roots[0]
        if f"{root}/byteorder" in archive.namelist() and archive.read(f"{root}/byteorder").strip() != b"little":
            raise WeightsFileError(f"{path}: a big-endian TorchScript archive, which depthcore does not read")
        module = _ScriptUnpickler(archive, root, path).load()
    if not isinstance(module, _ScriptObject):
        raise WeightsFileError(f"{path}: its TorchScript data is not a module")
    return _script_tensors(module, "")


def _script_tensors(obj: _ScriptObject, prefix: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, value in obj.state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            out |= _script_tensors(value, f"{prefix}{name}.")
    return out
