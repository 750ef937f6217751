"""The ``fetch_backbone`` stage for ``backbone: clip_rn50``: the CLIP weights ``clip.pretrained`` names, into the
stage's output folder.

``clip.pretrained`` is

- ``openai``: OpenAI's release, located through open_clip's pretrained table (URL, and the SHA-256
  OpenAI embeds in the URL), downloaded (resumable, verified) and converted once from the TorchScript
  archive (read as tensors, its code never run) into ``<model>-openai.safetensors``;
- ``none``: the architecture with random weights seeded by ``clip.init_seed`` (the offline mode);
- a file under ``weights/backbone/`` (the ``fetch_backbone`` stage depends on that folder, so DVC tracks the
  file's content): OpenAI's archive itself (``RN50.pt``) or an open_clip state dict (``.bin``, ``.pt`` or
  ``.safetensors``), converted the same way into ``<file stem>.safetensors``.

Either file is checked by building the model from it (:mod:`depthcore.weights.convert`), so a file that does not
fit ``clip.model`` is refused here.

The output folder holds exactly the weights in use and ``weights.json`` (model, tag, file, SHA-256);
everything downstream reads that manifest, never ``clip.pretrained`` itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from depthcore.download import RemoteFile, fetch
from depthcore.io import sha256_of
from depthcore.models.backbones.clip import ClipError, check_model_name, resnet_models
from depthcore.weights.convert import PAPER_BACKBONE, RELEASE_ENTRIES, convert_weights_file, fits
from depthcore.weights.manifest import MANIFEST, read_manifest, write_weights_dir

PRETRAINED_OPENAI = "openai"


def fetch_clip_weights(clip, out_dir: Path | str, *, local_dir: Path, progress: bool = True) -> Path:
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
        use_local=lambda source, folder: convert_weights_file(
            PAPER_BACKBONE, clip.model, source, folder / f"{source.stem}.safetensors"
        ),
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
    previous = read_manifest(out_dir, stage="fetch_backbone") if (out_dir / MANIFEST).exists() else {}
    if target.exists() and previous.get("file") == target.name and sha256_of(target) == previous.get("sha256"):
        if fits(PAPER_BACKBONE, model, target):
            return {k: previous[k] for k in RELEASE_ENTRIES if k in previous}
    # OpenAI publishes the SHA-256 of each file as the last folder of its URL.
    remote = RemoteFile(url=url, filename=os.path.basename(url), sha256=url.rstrip("/").split("/")[-2])
    archive = fetch(remote, out_dir, progress=progress)
    entries = convert_weights_file(PAPER_BACKBONE, model, archive, target)
    archive.unlink()
    return entries | {"url": url}
