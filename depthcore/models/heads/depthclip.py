"""DepthCLIP: zero-shot depth as distance classification of layer4 features against prompts.

Per feature location (DepthCLIP, Zhang et al. 2022):

1. dense embedding (``dense_embeddings``), one of
   - ``depthclip`` (published): the raw 2048-d layer4 vector, L2-normalised, then every second
     channel (0, 2, ..., 2046) kept -> 1024-d, not renormalised;
   - ``maskclip``: the attention pool's value projection then output projection applied at every
     location (as MaskCLIP does), L2-normalised -> the 1024-d joint image-text space;
   - ``embedded`` (ViT CLIPs): the cached ``dense`` layer, MaskCLIP's value path through the last block
     computed by the backbone (:mod:`depthcore.models.backbones.zoo`), L2-normalised;
2. ``depth_from_embeddings``: logits = 100 * <dense, text_k> / temperature over the K depth
   classes, softmax over k, depth = sum_k p_k * bin_k (metres).

The zero-shot prediction for an image averages the prediction of the image and of its mirror
image (flipped back), upsamples it bilinearly to the 416 x 544 input crop and pastes it into a zero
480 x 640 canvas (``depthcore.geometry.frame``).

The adapters of the paper use a variant of this head (:func:`cosine_depth`): every second channel of the
*raw* layer4 vector is kept and then L2-normalised (so logits are true cosines), and the logits are
cos / temperature with the adapter's own temperature (0.001 for the MSA's initial map, 0.1 for the
CLIP-Adapter and the coarse net), without DepthCLIP's factor 100.

The ``clip_head`` stage encodes the prompts once (:mod:`depthcore.features.head`) and saves the head (text
embeddings, bins, and the attention-pool projections for ``maskclip``) as a small safetensors artifact
(:mod:`depthcore.artifacts`); everything downstream loads it and never rebuilds CLIP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depthcore.device import per_image
from depthcore.errors import DepthcoreError
from depthcore.geometry.frame import flip_average, paste_prediction

LOGIT_SCALE = 100.0  # CLIP's fixed logit scale in DepthCLIP (the learned one is not used)
CHANNEL_STEP = 2  # depthclip dense mode keeps channels 0, 2, 4, ...
PROJECTION_KEYS = ("v_weight", "v_bias", "c_weight", "c_bias")
DENSE_MODES = ("depthclip", "maskclip", "embedded")  # embedded: the input is already in the text space (ViT CLIPs)


def cosine_logits(features: torch.Tensor, text: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """The adapters' depth logits: features B x C x h x w (raw or adapted layer4, any float dtype), text K x D
    (normalised here), C a multiple of D -> B x K x h x w float32 = cos(channels 0, s, 2s... of the feature,
    text_k) / temperature with s = C // D. float32 even under autocast."""
    channels, dim = features.shape[1], text.shape[1]
    if channels % dim:
        raise ValueError(f"cannot subsample {channels} feature channels to the {dim}-d text space")
    with torch.autocast(features.device.type, enabled=False):
        dense = F.normalize(features[:, :: channels // dim].float(), dim=1)
        return torch.einsum("bdhw,kd->bkhw", dense, F.normalize(text.float(), dim=-1)) / temperature


def expected_depth(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """B x K x h x w logits, K bin depths (metres) -> B x 1 x h x w = sum_k softmax_k * bin_k (float32)."""
    with torch.autocast(logits.device.type, enabled=False):
        probs = logits.float().softmax(dim=1)
        return (probs * bins.float()[None, :, None, None]).sum(dim=1, keepdim=True)


def cosine_depth(features: torch.Tensor, text: torch.Tensor, bins: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """The adapters' zero-shot head: layer4 B x C x h x w -> depth B x 1 x h x w metres (13 x 17 for NYU)."""
    return expected_depth(cosine_logits(features, text, temperature=temperature), bins)


def depth_prompts(cfg) -> list[str]:
    """One prompt per depth class, e.g. 'This object is giant'."""
    return [cfg.template.format(object=cfg.object, depth_class=name) for name in cfg.classes]


class DepthCLIPHead(nn.Module):
    """Layer4 features -> metric depth at feature resolution, without any training."""

    def __init__(
        self,
        *,
        text_embeddings: torch.Tensor,
        bins: torch.Tensor | tuple[float, ...],
        temperature: float,
        dense: str = "depthclip",
        projections: dict[str, torch.Tensor] | None = None,
    ):
        """text_embeddings: K x D, L2-normalised; bins: K depths in metres; temperature > 0;
        dense: 'depthclip', 'maskclip' or 'embedded' (the input already in the text space: a ViT CLIP's ``dense``
        layer); projections: the attention pool's ``v_weight`` (C x C),
        ``v_bias`` (C), ``c_weight`` (D x C), ``c_bias`` (D), required for 'maskclip'."""
        super().__init__()
        if dense not in DENSE_MODES:
            raise ValueError(f"unknown dense mode {dense!r}; valid modes are {list(DENSE_MODES)}")
        bins = torch.as_tensor(bins, dtype=torch.float32)
        if text_embeddings.ndim != 2 or bins.shape != (text_embeddings.shape[0],):
            raise ValueError(
                f"text embeddings must be K x D with one bin per row; got {tuple(text_embeddings.shape)} "
                f"and {tuple(bins.shape)} bins"
            )
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.dense = dense
        self.temperature = float(temperature)
        self.register_buffer("text", text_embeddings.detach().float().clone())
        self.register_buffer("bins", bins.clone())
        if dense == "maskclip":
            if projections is None or any(key not in projections for key in PROJECTION_KEYS):
                raise ValueError(f"dense='maskclip' needs the attention-pool projections {PROJECTION_KEYS}")
            if projections["c_weight"].shape[0] != self.text.shape[1]:
                raise ValueError(
                    f"maskclip output dim {projections['c_weight'].shape[0]} != text dim {self.text.shape[1]}"
                )
            for key in PROJECTION_KEYS:
                self.register_buffer(key, projections[key].detach().float().clone())

    def dense_embeddings(self, layer4: torch.Tensor) -> torch.Tensor:
        """layer4: B x C x h x w (any float dtype) -> B x D x h x w float32 dense embeddings (float32
        even under autocast)."""
        with torch.autocast(layer4.device.type, enabled=False):
            x = layer4.float()
            if self.dense == "depthclip":
                x = F.normalize(x, dim=1)[:, ::CHANNEL_STEP]
            elif self.dense == "embedded":  # a ViT CLIP's cached MaskCLIP value-path embeddings
                x = F.normalize(x, dim=1)
            else:
                x = F.conv2d(x, self.v_weight[:, :, None, None], self.v_bias)
                x = F.normalize(F.conv2d(x, self.c_weight[:, :, None, None], self.c_bias), dim=1)
        if x.shape[1] != self.text.shape[1]:
            raise ValueError(
                f"dense embeddings have {x.shape[1]} channels but the text embeddings {self.text.shape[1]}: "
                f"layer4 with {layer4.shape[1]} channels does not fit this head"
            )
        return x

    def depth_from_embeddings(
        self, dense: torch.Tensor, text: torch.Tensor | None = None, *, logit_scale: float | None = None
    ) -> torch.Tensor:
        """dense: B x D x h x w; text: K x D (default: the head's prompts) -> B x 1 x h x w metres.

        logits = logit_scale * <dense, text_k> (default: LOGIT_SCALE / temperature, DepthCLIP's), in
        float32 even under autocast (the logits reach ~1000). Used as given, no renormalisation: the
        published head feeds vectors of norm ~1/sqrt(2).
        """
        text = self.text if text is None else text
        scale = LOGIT_SCALE / self.temperature if logit_scale is None else logit_scale
        with torch.autocast(dense.device.type, enabled=False):
            return expected_depth(scale * torch.einsum("bdhw,kd->bkhw", dense.float(), text.float()), self.bins)

    def forward(self, layer4: torch.Tensor) -> torch.Tensor:
        """layer4: B x C x h x w -> B x 1 x h x w depth in metres."""
        return self.depth_from_embeddings(self.dense_embeddings(layer4))


class HeadError(DepthcoreError, ValueError):
    """The head artifact is missing or unreadable, or the settings do not fit the CLIP model."""


def zeroshot_depth(head: nn.Module, layer4_pair: torch.Tensor) -> torch.Tensor:
    """Full zero-shot prediction from cached features.

    layer4_pair: B x 2 x C x h x w (index 1 = features of the horizontally flipped image), any float
    dtype. Returns B x 1 x 480 x 640 float32 metres, 0 outside the DepthCLIP crop; computed one image at a
    time, so independent of B.
    """
    if layer4_pair.ndim != 5 or layer4_pair.shape[1] != 2:
        raise ValueError(f"expected B x 2 x C x h x w (image, flipped) features, got {tuple(layer4_pair.shape)}")
    b = layer4_pair.shape[0]
    depth = per_image(lambda pair: head(pair.flatten(0, 1).float()), layer4_pair)  # 2B x 1 x h x w, per image
    depth = depth.unflatten(0, (b, 2))
    return paste_prediction(flip_average(depth[:, 0], depth[:, 1]))
