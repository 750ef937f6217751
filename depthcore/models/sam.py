"""Segment Anything (SAM) weights: the official checkpoints, seeded random init, and a strict builder.

``sam.pretrained`` is ``"official"`` (Meta's released checkpoint for ``sam.model``, downloaded by the
``fetch_sam`` stage into ``data/weights/sam/``), ``"none"`` (the same architecture with seeded random
weights, for offline runs) or a file under ``weights/sam/`` (a ``state_dict`` saved with ``torch.save``;
the fetch stage depends on that folder, so DVC tracks the file's content). The folder's manifest
(:mod:`depthcore.models.weights`) says which; :func:`load_sam` reads it. The architecture comes from
the ``segment_anything`` package; image encoders always work on 1024 x 1024 inputs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from depthcore.download import RemoteFile, fetch
from depthcore.models.weights import WeightsError, read_manifest, weights_file, write_weights_dir

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
# Sizes and SHA-256 of the official releases (the hashes are the ones published alongside the
# checkpoints and pinned by several downstream projects, e.g. micro-sam's model registry).
SAM_CHECKPOINTS: dict[str, RemoteFile] = {
    "vit_b": RemoteFile(
        url=SAM_URL + "sam_vit_b_01ec64.pth",
        filename="sam_vit_b_01ec64.pth",
        size=375_042_383,
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "vit_l": RemoteFile(
        url=SAM_URL + "sam_vit_l_0b3195.pth",
        filename="sam_vit_l_0b3195.pth",
        size=1_249_524_607,
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_h": RemoteFile(
        url=SAM_URL + "sam_vit_h_4b8939.pth",
        filename="sam_vit_h_4b8939.pth",
        size=2_564_550_879,
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
}
PRETRAINED_OFFICIAL = "official"
LOCAL_DIR = Path("weights/sam")  # user-provided SAM checkpoints live here (a DVC dependency of fetch_sam)


class SamWeightsError(WeightsError):
    """SAM weights are missing, unreadable, or do not belong to the chosen ``sam.model``."""


def fetch_sam_weights(sam, out_dir: Path | str, *, local_dir: Path = LOCAL_DIR, progress: bool = True) -> Path:
    """Make ``out_dir`` hold the weights ``sam`` (the sam section) asks for and their manifest; returns the
    manifest path. 'official' downloads (resuming, verifying size and SHA-256); other files are removed."""
    remote = SAM_CHECKPOINTS[sam.model]
    return write_weights_dir(
        sam,
        out_dir,
        remote_tag=PRETRAINED_OFFICIAL,
        fetch_remote=lambda folder: {"file": fetch(remote, folder, progress=progress).name, "sha256": remote.sha256},
        local_dir=local_dir,
        param="sam.pretrained",
    )


def load_sam(weights_dir: Path | str) -> Sam:
    """The SAM model the ``fetch_sam`` manifest in ``weights_dir`` describes, in eval mode on the CPU."""
    manifest = read_manifest(weights_dir, stage="fetch_sam")
    path = weights_file(weights_dir, manifest, stage="fetch_sam")
    return build_sam(model=manifest["model"], checkpoint=path, init_seed=manifest.get("init_seed", 0))


def build_sam(*, model: str, checkpoint: Path | None = None, init_seed: int = 0) -> Sam:
    """The SAM ``model`` (vit_b, vit_l, vit_h) in eval mode on the CPU, with ``checkpoint``'s weights or,
    for None, seeded random weights (the global RNG is left untouched). A checkpoint is loaded with
    ``weights_only=True`` and strictly: one that does not fit raises SamWeightsError naming the keys."""
    if model not in SAM_CHECKPOINTS:
        raise SamWeightsError(f"unknown SAM model {model!r}; valid models are {list(SAM_CHECKPOINTS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        sam = sam_model_registry[model]()
    if checkpoint is not None:
        load_sam_checkpoint(sam, checkpoint, model_name=model)
    return sam.eval()


def load_sam_checkpoint(model: torch.nn.Module, path: Path | str, *, model_name: str) -> None:
    """Load the state_dict at ``path`` into ``model`` strictly (``weights_only=True``).

    Raises SamWeightsError naming ``model_name`` and the missing, unexpected and mis-shaped keys.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only errors all mean "not a usable checkpoint"
        raise SamWeightsError(f"could not read SAM checkpoint {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SamWeightsError(f"SAM checkpoint {path} is not a state_dict (a mapping of parameter names to tensors)")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        raise SamWeightsError(
            f"SAM checkpoint {path} does not match model {model_name!r} (params 'sam.model'): "
            f"{len(missing)} missing keys {_head(missing)}, {len(unexpected)} unexpected keys {_head(unexpected)}, "
            f"{len(mismatched)} shape mismatches {_head(mismatched)}. Choose the sam.model the checkpoint was "
            f"trained as ({list(SAM_CHECKPOINTS)})."
        )
    model.load_state_dict(state, strict=True)


def _head(items: list[str], n: int = 5) -> list[str]:
    return items[:n] + ([f"... {len(items) - n} more"] if len(items) > n else [])
