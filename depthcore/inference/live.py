"""A model with its inputs computed live: what training read from the cache, computed from new frames.

A checkpoint records what every computed input it read depends on (:mod:`depthcore.training.checkpoint`): the
CLIP weights' manifest behind the cached layers, the zero-shot map's head (SHA-256) and CLIP, the segmenter and
its settings. :class:`LivePredictor` rebuilds each from the local ``fetch_backbone`` / ``fetch_sam`` folders and the
``clip_head`` artifact, and refuses, naming the stage that provides them, when these are not the recorded ones.
It then runs the same code as the caching stages (:func:`depthcore.features.backbone.clip_views`,
:func:`depthcore.models.heads.depthclip.zeroshot_depth`, the segmenters) and the same sample construction as
training (:func:`depthcore.data.samples.sample_from_arrays`), so a dataset image predicted live gives the
evaluate stage's prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from depthcore.artifacts import HEAD_LAYER, ArtifactError, head_identity, head_layer, load_head
from depthcore.config.params import FelzenszwalbSection, SamSection
from depthcore.data.batch import CLIP_PREFIX
from depthcore.data.samples import sample_from_arrays
from depthcore.errors import DepthcoreError
from depthcore.features.backbone import clip_views, features_attrs
from depthcore.features.segments import SamSegmenter, Segmenter, felzenszwalb_segmenter, segment_none
from depthcore.geometry.frame import DEPTHCLIP_CROP, crop_tensor
from depthcore.models.adapters.base import DepthAdapter
from depthcore.models.heads.depthclip import zeroshot_depth
from depthcore.models.predict import predict_crop, to_device
from depthcore.training.checkpoint import CheckpointError, build_from_checkpoint, checkpoint_config, load_checkpoint
from depthcore.weights.backbone import load_backbone
from depthcore.weights.manifest import MANIFEST, read_manifest

ZEROSHOT_MODEL = "zeroshot"  # the MODEL argument that names DepthCLIP zero-shot instead of a checkpoint
INPUT_FLAGS = (
    "--backbone-weights DIR (the repository's data/weights/backbone), --head FILE "
    "(data/features/clip_head.safetensors) and, for a model with SAM segments, --sam-weights DIR (data/weights/sam)"
)
SAFETENSORS_PROBE_BYTES = 9  # a safetensors file: 8 bytes of little-endian header length, then the JSON header
PICKLE_PROTO = b"\x80"  # the first byte of a pickle of protocol 2 or later
ZIP_MAGIC = b"PK"  # torch.save's zip format


class PredictError(DepthcoreError, ValueError):
    """Live prediction cannot rebuild what the model needs (other weights, another head, an unknown segmenter)."""


def require_input(path: Path, flag: str, given: Path | str, stage: str) -> None:
    """PredictError unless ``path`` (a weights folder's manifest, or the head artifact) exists: one line naming the
    stage that makes it in the repository, and the flags that name the pipeline's files from anywhere else."""
    if not path.exists():
        raise PredictError(
            f"{flag} {given}: {path} does not exist (relative to {Path.cwd()}). In the depthcore repository run "
            f"`dvc repro {stage}`; elsewhere pass the repository's files: {INPUT_FLAGS}"
        )


def check_checkpoint_file(path: Path | str) -> None:
    """CheckpointError (one line) when ``path`` is a folder or not a safetensors file (a pickle or a torch.save
    zip posing as a checkpoint: never unpickled), before anything reads it."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint: name the .safetensors file in it "
            f"(e.g. {path / 'model.safetensors'})"
        )
    if not path.is_file():
        return  # load_checkpoint names the stage that writes it
    with open(path, "rb") as fh:
        head = fh.read(SAFETENSORS_PROBE_BYTES)
    size = path.stat().st_size
    header = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    if head[8:9] == b"{" and header > size - 8:
        raise CheckpointError(
            f"{path} is not a readable checkpoint: truncated (its header alone is {header} bytes, the file {size}); "
            "copy it again, or rerun `dvc repro train`"
        )
    if len(head) < SAFETENSORS_PROBE_BYTES or head[8:9] != b"{" or header == 0:
        kind = ""
        if head[:1] == PICKLE_PROTO:
            kind = " (it is a Python pickle, which depthcore never unpickles)"
        elif head[:2] == ZIP_MAGIC:
            kind = " (it is a zip archive, e.g. a torch.save file, which depthcore never unpickles)"
        raise CheckpointError(
            f"{path} is not a readable checkpoint: not a safetensors file{kind}; predict with the "
            ".safetensors checkpoint `dvc repro train` wrote (models/model.safetensors)"
        )


def _backbone_weights_match(weights_dir: Path, recorded: dict[str, Any], what: str) -> None:
    """PredictError unless the ``fetch_backbone`` folder holds the ``recorded`` backbone weights."""
    local = read_manifest(weights_dir, stage="fetch_backbone")
    if local != recorded:
        backbone = recorded.get("backbone", "clip_rn50")
        settings = (
            f"clip.model: {recorded.get('model')} and clip.pretrained: {recorded.get('pretrained')}"
            if backbone == "clip_rn50"
            else f"backbones.{backbone}.pretrained: {recorded.get('pretrained')}"
        )
        raise PredictError(
            f"{what} weights {recorded}, but {weights_dir} holds {local}: run `dvc repro fetch_backbone` with "
            f"backbone: {backbone} and {settings}"
        )


def segmenter_from_settings(
    settings: dict[str, Any], *, weights_dir: Path, device: torch.device, points_per_batch: int
) -> Segmenter:
    """The segmenter a ``segments.zarr``'s attrs record (:func:`depthcore.features.segments.segmenter_settings`),
    with the same knobs; SAM only from the recorded weights."""
    method = settings.get("method")
    if method == "none":
        return segment_none
    if method == "felzenszwalb":
        return felzenszwalb_segmenter(FelzenszwalbSection.model_validate(settings["felzenszwalb"]))
    if method == "sam":
        local = read_manifest(weights_dir, stage="fetch_sam")
        if local != settings["sam_weights"]:
            raise PredictError(
                f"the model's segments came from SAM weights {settings['sam_weights']}, but {weights_dir} holds "
                f"{local}: run `dvc repro fetch_sam` with the sam params the model was trained with"
            )
        from depthcore.weights.sam import load_sam  # imported here: SAM (segment_anything) is heavy

        return SamSegmenter(
            load_sam(weights_dir).to(device),
            SamSection.model_validate(settings["sam"]),
            points_per_batch=points_per_batch,
        )
    if method == "gt":
        raise PredictError(
            "the model reads ground-truth segments (segments.method: gt), which a new image does not have: use a "
            "model trained with segments.method sam, felzenszwalb or none"
        )
    raise PredictError(f"the checkpoint records an unknown segmenter {settings!r}")


class LivePredictor:
    """Depth for 480 x 640 frames from a trained adapter (or DepthCLIP zero-shot, ``model=None``), every input
    computed live. Build with :meth:`from_checkpoint` or :meth:`zeroshot`."""

    def __init__(
        self,
        *,
        name: str,
        model: DepthAdapter | None,
        backbone=None,
        head=None,
        head_layer: str = HEAD_LAYER,
        segmenter: Segmenter | None = None,
        device: torch.device,
    ):
        self.name, self.device = name, device
        self.model = None if model is None else model.to(device).eval()
        self.keys = () if model is None else model.batch_keys()  # what the model reads, computed live
        self.layers = () if model is None else model.cfg.cached_layers()
        self.backbone = None if backbone is None else backbone.to(device)
        self.head, self.segmenter = head, segmenter
        self.head_layer = head_layer

    @classmethod
    def from_checkpoint(
        cls,
        path: Path | str,
        *,
        backbone_weights: Path,
        head: Path,
        sam_weights: Path,
        device: torch.device,
        points_per_batch: int = 64,
    ) -> LivePredictor:
        """The adapter of checkpoint ``path`` with what it reads rebuilt from the ``fetch_backbone`` folder
        ``backbone_weights``, the ``clip_head`` artifact ``head`` and the ``fetch_sam`` folder ``sam_weights``.
        CheckpointError (one line) for a file that is not a depthcore checkpoint, or whose metadata is not what
        depthcore wrote (edited: missing or invalid entries); PredictError when what it reads is not here."""
        check_checkpoint_file(path)
        meta, state = load_checkpoint(path)
        try:
            return cls._from_meta(
                meta,
                state,
                backbone_weights=Path(backbone_weights),
                head=Path(head),
                sam_weights=Path(sam_weights),
                device=device,
                points_per_batch=points_per_batch,
            )
        except (KeyError, TypeError, AttributeError, IndexError, ValidationError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise CheckpointError(
                f"{path}: its metadata is not what depthcore writes ({type(exc).__name__} {detail}; edited?): use "
                "the checkpoint `dvc repro train` wrote"
            ) from None

    @classmethod
    def _from_meta(
        cls,
        meta: dict[str, Any],
        state: dict[str, torch.Tensor],
        *,
        backbone_weights: Path,
        head: Path,
        sam_weights: Path,
        device: torch.device,
        points_per_batch: int,
    ) -> LivePredictor:
        """:meth:`from_checkpoint` from the checkpoint's metadata and state dict."""
        cfg = checkpoint_config(meta)
        keys, layers = cfg.batch_keys(), cfg.cached_layers()
        backbone = zs_head = segmenter = attrs = None
        zs_layer = HEAD_LAYER
        if layers or "zeroshot" in keys:
            require_input(backbone_weights / MANIFEST, "--backbone-weights", backbone_weights, "fetch_backbone")
        if layers:
            _backbone_weights_match(
                backbone_weights, meta["features"]["weights"], "the model was trained on features of"
            )
        if "zeroshot" in keys:
            recorded = meta["inputs"]["zeroshot"]["head"]
            require_input(head, "--head", head, "clip_head")
            local = head_identity(head)
            if local["sha256"] != recorded["sha256"]:
                raise PredictError(
                    f"the model read zero-shot depth from the DepthCLIP head {recorded['sha256'][:12]}, but {head} is "
                    f"{local['sha256'][:12]}: run `dvc repro clip_head` with the depthclip and clip params the "
                    "model was trained with"
                )
            _backbone_weights_match(backbone_weights, recorded["weights"], "the model's zero-shot depth came from")
            zs_head = load_head(head)
            zs_layer = head_layer(head)
        if "segments" in keys:
            settings = meta["inputs"]["segments"]
            if settings.get("method") == "sam":
                require_input(sam_weights / MANIFEST, "--sam-weights", sam_weights, "fetch_sam")
            segmenter = segmenter_from_settings(
                settings, weights_dir=sam_weights, device=device, points_per_batch=points_per_batch
            )
        if layers or zs_head is not None:
            backbone = load_backbone(backbone_weights)
        if layers:  # the crop, normalisation and layer shapes of live features: refused if the model's differ
            attrs = features_attrs(backbone, meta["features"]["weights"], layers)
        return cls(
            name=meta["adapter"],
            model=build_from_checkpoint(meta, state, features_attrs=attrs),
            backbone=backbone,
            head=zs_head,
            head_layer=zs_layer,
            segmenter=segmenter,
            device=device,
        )

    @classmethod
    def zeroshot(cls, *, backbone_weights: Path, head: Path, device: torch.device) -> LivePredictor:
        """DepthCLIP zero-shot with the configured CLIP (the ``fetch_backbone`` folder), its ``clip_head`` artifact."""
        require_input(Path(head), "--head", head, "clip_head")
        require_input(Path(backbone_weights) / MANIFEST, "--backbone-weights", backbone_weights, "fetch_backbone")
        _backbone_weights_match(backbone_weights, head_identity(head)["weights"], f"the head {head} was encoded by")
        try:
            zs_head = load_head(head)
        except ArtifactError as exc:  # a backbone without a text tower
            raise PredictError(str(exc)) from None
        return cls(
            name="DepthCLIP zero-shot",
            model=None,
            backbone=load_backbone(backbone_weights),
            head=zs_head,
            head_layer=head_layer(head),
            device=device,
        )

    @torch.no_grad()
    def predict(self, frames: np.ndarray) -> torch.Tensor:
        """B x 480 x 640 x 3 uint8 frames -> B x 1 x 416 x 544 float32 metres at the DepthCLIP crop (CPU): the
        flip-averaged prediction, as the evaluate (or zeroshot) stage makes it."""
        need = self.layers + ((self.head_layer,) if self.head is not None else ())
        views = clip_views(self.backbone, frames, tuple(dict.fromkeys(need))) if need else {}
        zeroshot = None
        if self.head is not None:
            zeroshot = zeroshot_depth(self.head, torch.from_numpy(views[self.head_layer]))  # B x 1 x 480 x 640
        if self.model is None:
            return crop_tensor(zeroshot, DEPTHCLIP_CROP)
        samples = []
        for b, frame in enumerate(frames):
            arrays: dict[str, np.ndarray] = {"rgb": frame}
            arrays |= {key: views[key.removeprefix(CLIP_PREFIX)][b] for key in self.keys if key.startswith(CLIP_PREFIX)}
            if zeroshot is not None:
                arrays["zeroshot"] = zeroshot[b, 0].numpy()
            if self.segmenter is not None:
                arrays["segments"] = self.segmenter(frame, None)
            samples.append(sample_from_arrays(arrays, self.keys, with_flipped=True))
        batch = {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}
        return predict_crop(self.model, to_device(batch, self.device)).cpu()
