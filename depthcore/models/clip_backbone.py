"""The frozen CLIP backbone: weights, multi-scale visual features and the text encoder.

Only OpenAI's ModifiedResNet image towers (open_clip ``RN*`` models) are supported: their
stem / layer1..layer4 structure gives the feature pyramid that DepthCLIP and the adapters use.

Weights (``clip.pretrained``):

- ``openai``: OpenAI's release, located through open_clip's pretrained table (URL, and the SHA-256
  that OpenAI embeds in the URL). ``fetch_clip_weights`` downloads it (resumable, verified) and
  converts the TorchScript archive once into a plain state dict ``<model>-openai.pt`` next to it,
  whose own SHA-256 is recorded, so every later stage loads with ``torch.load(weights_only=True)``
  and never touches the network.
- ``none``: the same architecture with random weights seeded by ``clip.init_seed`` (offline mode).
- a path: a local open_clip / OpenAI state dict (``.pt`` / ``.bin`` / ``.safetensors``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from depthcore.config import CLIP_LAYERS, ClipConfig
from depthcore.download import DownloadError, RemoteFile, fetch, sha256_of
from depthcore.errors import DepthcoreError

PRETRAINED_OPENAI = "openai"
PRETRAINED_NONE = "none"
CONVERTED_SUFFIX = "-openai.pt"
# Keys in OpenAI's TorchScript state dicts that are metadata, not parameters.
OPENAI_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")
# Stride of each cached layer relative to the input image. The stem is taken before its 2 x 2
# average pool (after the third conv), so it is at stride 2.
LAYER_STRIDES = {"stem": 2, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


class ClipError(DepthcoreError, ValueError):
    """An unknown CLIP model, a missing weights file, or weights that do not fit the model."""


@dataclass(frozen=True)
class LayerSpec:
    """One cached feature map: channels and stride (input pixels per feature cell)."""

    channels: int
    stride: int


def resnet_models() -> list[str]:
    """open_clip model names with a ModifiedResNet image tower (stem, layer1..layer4)."""
    import open_clip

    return sorted(name for name in open_clip.list_models() if name.startswith("RN") and _vision_cfg(name).get("layers"))


def _vision_cfg(name: str) -> dict:
    import open_clip

    return (open_clip.get_model_config(name) or {}).get("vision_cfg", {})


def check_model_name(name: str) -> None:
    """Raise ClipError listing the valid names unless ``name`` is a ModifiedResNet CLIP model."""
    valid = resnet_models()
    if name not in valid:
        raise ClipError(
            f"params 'clip.model': unknown or unsupported CLIP model {name!r}; valid models (ModifiedResNet "
            f"image towers with stem/layer1..layer4) are {valid}"
        )


def layer_specs_of(visual: nn.Module) -> dict[str, LayerSpec]:
    """Channels and stride of each cacheable layer of an open_clip ModifiedResNet image tower."""
    channels = {"stem": visual.conv3.out_channels}
    for name in CLIP_LAYERS[1:]:
        channels[name] = getattr(visual, name)[-1].conv3.out_channels
    return {name: LayerSpec(channels[name], LAYER_STRIDES[name]) for name in CLIP_LAYERS}


# ------------------------------------------------------------------------------------------ weights
def converted_weights_path(cfg: ClipConfig, weights_dir: Path | str) -> Path:
    """Where ``fetch_clip_weights`` keeps the plain state dict of the OpenAI weights."""
    return Path(weights_dir) / f"{cfg.model}{CONVERTED_SUFFIX}"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def fetch_clip_weights(cfg: ClipConfig, weights_dir: Path | str, *, progress: bool = True) -> Path | None:
    """Make the weights ``cfg`` asks for available locally; return their path (None for random init).

    ``openai``: download OpenAI's archive (URL and SHA-256 from open_clip's pretrained table) into
    ``weights_dir``, verify it, convert it to a plain state dict ``<model>-openai.pt`` with its SHA-256
    in ``<model>-openai.pt.sha256`` and its provenance in ``<model>-openai.json``, and delete the
    archive. Raises DownloadError (with the offline command) when the network is unavailable.
    """
    check_model_name(cfg.model)
    Path(weights_dir).mkdir(parents=True, exist_ok=True)  # the stage's output, even when nothing is fetched
    if cfg.pretrained == PRETRAINED_NONE:
        return None
    if cfg.pretrained != PRETRAINED_OPENAI:
        path = Path(cfg.pretrained)
        if not path.is_file():
            raise ClipError(
                f"params 'clip.pretrained': {cfg.pretrained!r} is neither 'openai', 'none' nor an existing "
                "checkpoint file"
            )
        return path

    import open_clip

    url = open_clip.get_pretrained_url(cfg.model, PRETRAINED_OPENAI)
    if not url:
        raise ClipError(
            f"open_clip has no OpenAI weights for {cfg.model!r}; models with them: "
            f"{sorted(set(open_clip.list_pretrained_models_by_tag(PRETRAINED_OPENAI)) & set(resnet_models()))}"
        )
    out = converted_weights_path(cfg, weights_dir)
    if out.exists() and _sidecar(out).exists():
        expected = _sidecar(out).read_text().split()[0]
        if sha256_of(out) == expected:
            return out
        raise DownloadError(f"{out}: SHA-256 does not match {_sidecar(out)}; delete both and rerun fetch_weights")
    # OpenAI publishes the SHA-256 of each file as the last folder of its URL.
    remote = RemoteFile(url=url, filename=os.path.basename(url), sha256=url.rstrip("/").split("/")[-2])
    archive = fetch(remote, weights_dir, progress=progress)
    state = {k: v for k, v in torch.jit.load(str(archive), map_location="cpu").state_dict().items()}
    for key in OPENAI_METADATA_KEYS:
        state.pop(key, None)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out)
    digest = sha256_of(out)
    _sidecar(out).write_text(f"{digest}  {out.name}\n")
    provenance = {"model": cfg.model, "url": url, "source_sha256": remote.sha256, "sha256": digest}
    out.with_suffix(".json").write_text(json.dumps(provenance, indent=2) + "\n")
    archive.unlink()
    return out


def weights_path(cfg: ClipConfig, weights_dir: Path | str) -> Path | None:
    """The local weights file ``build_clip_backbone`` loads (None for random init); must exist."""
    if cfg.pretrained == PRETRAINED_NONE:
        return None
    path = converted_weights_path(cfg, weights_dir) if cfg.pretrained == PRETRAINED_OPENAI else Path(cfg.pretrained)
    if not path.is_file():
        raise ClipError(f"CLIP weights {path} not found: run `dvc repro fetch_weights` first")
    return path


def weights_tag(cfg: ClipConfig) -> str:
    """A short description of the weights, e.g. 'openai' or 'none (seed 0)'."""
    return f"none (seed {cfg.init_seed})" if cfg.pretrained == PRETRAINED_NONE else cfg.pretrained


def weights_sha256(cfg: ClipConfig, weights_dir: Path | str) -> str | None:
    """SHA-256 of the weights file (None for random init); the recorded value for 'openai'."""
    path = weights_path(cfg, weights_dir)
    if path is None:
        return None
    side = _sidecar(path)
    return side.read_text().split()[0] if side.exists() else sha256_of(path)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A CLIP state dict from a plain checkpoint (weights_only); unwraps 'state_dict' and 'module.'."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # TorchScript archives and pickles with code are refused by weights_only
            raise ClipError(
                f"{path} is not a plain state dict loadable with weights_only=True ({exc}). OpenAI's original "
                "TorchScript .pt files are converted by `clip.pretrained: openai` (fetch_weights stage)."
            ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ClipError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in OPENAI_METADATA_KEYS}


# ------------------------------------------------------------------------------------------ backbone
class ClipBackbone(nn.Module):
    """Frozen open_clip ModifiedResNet CLIP: multi-scale image features and prompt embeddings.

    Images are B x 3 x H x W, already cropped and normalised (H, W multiples of 32; DepthCLIP uses
    416 x 544 with ImageNet statistics). Parameters never require gradients and the module stays
    in eval mode (BatchNorm uses its running statistics) whatever ``train()`` is called with.
    """

    def __init__(self, clip_model: nn.Module, *, model_name: str):
        super().__init__()
        self.model_name = model_name
        self.clip = clip_model
        if not all(hasattr(clip_model.visual, name) for name in ("conv3", *CLIP_LAYERS[1:], "attnpool")):
            raise ClipError(f"{model_name}: the image tower is not a ModifiedResNet (stem, layer1..layer4)")
        self.layer_specs = layer_specs_of(clip_model.visual)
        self.LAYER_SPECS = self.layer_specs  # per layer name: LayerSpec(channels, stride)
        self.embed_dim = int(clip_model.visual.output_dim)
        self._tokenizer = None  # open_clip's tokenizer for model_name, loaded on first use
        self.clip.requires_grad_(False)
        self.clip.eval()

    def train(self, mode: bool = True) -> ClipBackbone:  # frozen: always eval
        return super().train(False)

    def forward_features(self, images: torch.Tensor, layers: tuple[str, ...] = CLIP_LAYERS) -> dict[str, torch.Tensor]:
        """images: B x 3 x H x W normalised -> {layer: B x C x H/stride x W/stride} for ``layers``.

        The stem map is taken after the third stem conv (before the 2 x 2 average pool).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected B x 3 x H x W images, got {tuple(images.shape)}")
        if images.shape[-2] % 32 or images.shape[-1] % 32:
            raise ValueError(f"image height and width must be multiples of 32, got {tuple(images.shape[-2:])}")
        unknown = [name for name in layers if name not in LAYER_STRIDES]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown}; valid layers are {list(CLIP_LAYERS)}")
        visual = self.clip.visual
        wanted = set(layers)
        last = max(CLIP_LAYERS.index(name) for name in layers)
        out: dict[str, torch.Tensor] = {}
        x = images.to(visual.conv1.weight.dtype)
        x = visual.act1(visual.bn1(visual.conv1(x)))
        x = visual.act2(visual.bn2(visual.conv2(x)))
        x = visual.act3(visual.bn3(visual.conv3(x)))
        if "stem" in wanted:
            out["stem"] = x
        x = visual.avgpool(x)
        for index, name in enumerate(CLIP_LAYERS[1:], start=1):
            if index > last:
                break
            x = getattr(visual, name)(x)
            if name in wanted:
                out[name] = x
        return out

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_features(images)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """prompts: K strings -> K x D text embeddings, L2-normalised (D = ``embed_dim``)."""
        import open_clip

        if not prompts:
            raise ValueError("encode_text needs at least one prompt")
        if self._tokenizer is None:
            self._tokenizer = open_clip.get_tokenizer(self.model_name)
        tokens = self._tokenizer(list(prompts)).to(self.clip.token_embedding.weight.device)
        return F.normalize(self.clip.encode_text(tokens).float(), dim=-1)

    def attnpool_projections(self) -> dict[str, torch.Tensor]:
        """The attention pool's value and output projections (for MaskCLIP-style dense embeddings).

        Returns ``v_weight`` (C x C), ``v_bias`` (C), ``c_weight`` (D x C), ``c_bias`` (D), C = layer4
        channels, D = ``embed_dim``; detached copies in float32.
        """
        pool = self.clip.visual.attnpool
        return {
            "v_weight": pool.v_proj.weight.detach().float().clone(),
            "v_bias": pool.v_proj.bias.detach().float().clone(),
            "c_weight": pool.c_proj.weight.detach().float().clone(),
            "c_bias": pool.c_proj.bias.detach().float().clone(),
        }


def build_clip_backbone(*, cfg: ClipConfig, weights_dir: Path | str) -> ClipBackbone:
    """The frozen backbone for ``cfg`` on CPU, float32 (move it with ``.to(device)``).

    ``pretrained: none`` initialises randomly from ``cfg.init_seed`` (the global RNG is left as it
    was); otherwise the local weights file is loaded strictly, and a file that does not fit the
    model raises ClipError naming the missing and unexpected keys.
    """
    import open_clip

    check_model_name(cfg.model)
    path = weights_path(cfg, weights_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        model = open_clip.create_model(cfg.model, pretrained=None, device="cpu")
    if path is not None:
        state = load_state_dict(path)
        expected = set(model.state_dict())
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        if missing or unexpected:
            raise ClipError(
                f"{path} does not match CLIP model {cfg.model!r}: {len(missing)} missing key(s) "
                f"{_preview(missing)}, {len(unexpected)} unexpected key(s) {_preview(unexpected)}. "
                "Check clip.model against the checkpoint."
            )
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:  # right names, wrong shapes
            raise ClipError(f"{path} does not match CLIP model {cfg.model!r}: {exc}") from exc
    return ClipBackbone(model, model_name=cfg.model)


def _preview(keys: list[str], limit: int = 8) -> str:
    return str(keys[:limit] + (["..."] if len(keys) > limit else []))
