"""The ``fetch_sam`` stage: the SAM weights ``sam.pretrained`` names, into the stage's output folder.

``sam.pretrained`` is ``"official"`` (Meta's released checkpoint for ``sam.model``, downloaded, its size
and SHA-256 verified), ``"none"`` (the same architecture with seeded random weights, for offline runs) or
a file under ``weights/sam/`` (a ``state_dict`` saved with ``torch.save``; the fetch stage depends on that
folder, so DVC tracks the file's content), checked against the architecture here, not in a later stage.
"""

from __future__ import annotations

from pathlib import Path

from depthcore.download import RemoteFile, fetch
from depthcore.weights.manifest import copy_weights, write_weights_dir

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


def fetch_sam_weights(sam, out_dir: Path | str, *, local_dir: Path, progress: bool = True) -> Path:
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
        use_local=lambda source, folder: _checked_copy(source, folder, sam.model),
    )


def _checked_copy(source: Path, out_dir: Path, model: str) -> dict:
    """The user's SAM file checked against ``model`` (SamError naming the keys otherwise), then copied."""
    from depthcore.weights.sam import check_sam_checkpoint  # segment_anything is heavy: only when a file is given

    check_sam_checkpoint(source, model_name=model)
    return copy_weights(source, out_dir)
