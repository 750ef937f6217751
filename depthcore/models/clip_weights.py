"""CLIP weights: the ``fetch_clip`` stage's output folder and reading it back.

``clip.pretrained`` is

- ``openai``: OpenAI's release, located through open_clip's pretrained table (URL, and the SHA-256
  OpenAI embeds in the URL), downloaded (resumable, verified) and converted once from the TorchScript
  archive into ``<model>-openai.safetensors`` (deterministic bytes, no pickle);
- ``none``: the architecture with random weights seeded by ``clip.init_seed`` (the offline mode);
- a file under ``weights/clip/`` (the ``fetch_clip`` stage depends on that folder, so DVC tracks the
  file's content): a plain open_clip / OpenAI state dict (``.pt``, ``.bin`` or ``.safetensors``),
  copied into the output.

The output folder holds exactly the weights in use and ``weights.json`` (model, tag, file, SHA-256);
everything downstream reads that manifest, never ``clip.pretrained`` itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from depthcore.download import RemoteFile, fetch, sha256_of
from depthcore.io import atomic_path
from depthcore.models.weights import MANIFEST, WeightsError, read_manifest, write_weights_dir

LOCAL_DIR = Path("weights/clip")  # user-provided CLIP weights live here (a DVC dependency of fetch_clip)
PRETRAINED_OPENAI = "openai"
# Keys in OpenAI's TorchScript state dicts that are metadata, not parameters.
OPENAI_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")


class ClipError(WeightsError):
    """An unknown CLIP model, a missing weights file, or weights that do not fit the model."""


def resnet_models() -> list[str]:
    """open_clip model names with a ModifiedResNet image tower (stem, layer1..layer4)."""
    import open_clip

    return sorted(
        name
        for name in open_clip.list_models()
        if name.startswith("RN") and (open_clip.get_model_config(name) or {}).get("vision_cfg", {}).get("layers")
    )


def check_model_name(name: str) -> None:
    """ClipError listing the valid names unless ``name`` is a ModifiedResNet CLIP model."""
    valid = resnet_models()
    if name not in valid:
        raise ClipError(
            f"params 'clip.model': unknown or unsupported CLIP model {name!r}; valid models (ModifiedResNet image "
            f"towers with stem/layer1..layer4) are {valid}"
        )


def fetch_clip_weights(clip, out_dir: Path | str, *, local_dir: Path = LOCAL_DIR, progress: bool = True) -> Path:
    """Make ``out_dir`` hold the weights ``clip`` (a ClipSection) asks for and their manifest; returns
    the manifest path. Other files in ``out_dir`` are removed. DownloadError (with the offline command)
    when OpenAI's weights cannot be downloaded."""
    check_model_name(clip.model)
    return write_weights_dir(
        clip,
        out_dir,
        remote_tag=PRETRAINED_OPENAI,
        fetch_remote=lambda folder: _fetch_openai(clip.model, folder, progress),
        local_dir=local_dir,
        param="clip.pretrained",
    )


def _fetch_openai(model: str, out_dir: Path, progress: bool) -> dict[str, Any]:
    import open_clip

    url = open_clip.get_pretrained_url(model, PRETRAINED_OPENAI)
    if not url:
        raise ClipError(
            f"open_clip has no OpenAI weights for {model!r}; models with them: "
            f"{sorted(set(open_clip.list_pretrained_models_by_tag(PRETRAINED_OPENAI)) & set(resnet_models()))}"
        )
    target = out_dir / f"{model}-openai.safetensors"
    previous = read_manifest(out_dir, stage="fetch_clip") if (out_dir / MANIFEST).exists() else {}
    if target.exists() and previous.get("file") == target.name and sha256_of(target) == previous.get("sha256"):
        return {"file": target.name, "sha256": previous["sha256"], "url": url}
    # OpenAI publishes the SHA-256 of each file as the last folder of its URL.
    remote = RemoteFile(url=url, filename=os.path.basename(url), sha256=url.rstrip("/").split("/")[-2])
    archive = fetch(remote, out_dir, progress=progress)
    state = {k: v.contiguous() for k, v in torch.jit.load(str(archive), map_location="cpu").state_dict().items()}
    for key in OPENAI_METADATA_KEYS:
        state.pop(key, None)
    from safetensors.torch import save_file

    with atomic_path(target) as tmp:
        save_file(state, str(tmp))
    archive.unlink()
    return {"file": target.name, "sha256": sha256_of(target), "url": url, "source_sha256": remote.sha256}


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A CLIP state dict from a plain checkpoint (safetensors, or torch.load with weights_only=True);
    unwraps 'state_dict' and 'module.' and drops OpenAI's metadata entries."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # TorchScript archives and pickles with code are refused by weights_only
            raise ClipError(
                f"{path} is not a plain state dict loadable with weights_only=True ({exc}). OpenAI's original "
                "TorchScript .pt files are converted by `clip.pretrained: openai` (the fetch_clip stage)."
            ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ClipError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in OPENAI_METADATA_KEYS}
