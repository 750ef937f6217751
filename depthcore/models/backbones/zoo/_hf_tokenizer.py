"""A Hugging Face ``tokenizer.json`` read with the ``tokenizers`` package (no ``transformers``), producing the token
ids open_clip's ``HFTokenizer`` produces (SigLIP 2's Gemma tokenizer: ``zoo/siglip2.py``).

The rule, from open_clip 3.3.0 (``open_clip/tokenizer.py``: ``HFTokenizer.__call__``, ``get_clean_fn``,
``canonicalize_text``; ``model_configs/ViT-B-16-SigLIP2.json``: ``hf_tokenizer_name`` timm/ViT-B-16-SigLIP2,
``context_length`` 64, ``tokenizer_kwargs.clean`` 'canonicalize', no ``strip_sep_token``, no ``tokenizer_mode``):

1. each text is cleaned by open_clip's own cleaning function (``get_clean_fn(clean)``; 'canonicalize': ftfy's
   ``fix_text``, HTML unescaped twice, '_' -> ' ', ASCII punctuation removed, lower case, whitespace collapsed);
2. the cleaned texts go through the fast tokenizer as ``tokenizer(texts, max_length=L, padding='max_length',
   truncation=True)``: the file's normaliser, pre-tokenizer and model, then its special tokens (the post-processor;
   transformers' Gemma tokenizer rebuilds it from ``add_bos_token`` / ``add_eos_token`` of ``tokenizer_config.json``,
   so where that file lies beside ``tokenizer.json`` its two flags decide, else the file's post-processor);
3. truncation to L ids *including* the special tokens (the text is cut, the EOS stays last: ``longest_first``, from
   the right), then padding to L with the pad token's id (``<pad>``) on ``padding_side`` (the config's, else right:
   transformers' ``convert_siglip2_to_hf.py`` builds SigLIP 2's tokenizer with ``add_bos_token=False,
   add_eos_token=True, padding_side='right'``).

The result is K x L int64 (torch.long), as open_clip returns it. ``tokenizers`` applies exactly this truncation and
padding when enabled on the backend, which is what transformers' fast tokenizer does for that call.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from depthcore.models.backbones.zoo.base import BackboneError

TOKENIZER_FILE = "tokenizer.json"  # the fast tokenizer (normaliser, model, post-processor)
CONFIG_FILE = "tokenizer_config.json"  # optional: add_bos_token / add_eos_token / padding_side, as transformers
PAD_TOKEN = "<pad>"  # Gemma's pad token (HFTokenizer pads with tokenizer.pad_token_id)
BOS_TOKEN, EOS_TOKEN = "<bos>", "<eos>"  # Gemma's special tokens (ids 2 and 1 in its vocabulary)
DEFAULT_PADDING_SIDE = "right"  # SigLIP 2's (transformers convert_siglip2_to_hf.py get_siglip2_tokenizer)


class HFFileTokenizer:
    """strings -> K x ``context_length`` token ids (torch.long) as open_clip's ``HFTokenizer`` with the files in
    ``folder`` (see the module docstring); ``clean``: open_clip's cleaning name ('canonicalize', 'lower',
    'whitespace')."""

    def __init__(self, folder: Path | str, *, context_length: int, clean: str):
        from open_clip.tokenizer import get_clean_fn
        from tokenizers import Tokenizer, processors

        self.folder = Path(folder)
        self.file = self.folder / TOKENIZER_FILE
        self.context_length = context_length
        self.clean_fn = get_clean_fn(clean)
        try:
            backend = Tokenizer.from_file(str(self.file))
        except Exception as error:  # the Rust parser's message, on one line
            raise BackboneError(f"{self.file} is not a tokenizer.json: {' '.join(str(error).split())}") from None
        config = self.config()
        self.pad_id = self.special_id(backend, config.get("pad_token", PAD_TOKEN))
        if "add_bos_token" in config or "add_eos_token" in config:  # transformers' Gemma: the config's flags decide
            bos, eos = bool(config.get("add_bos_token", True)), bool(config.get("add_eos_token", False))
            used = [(t, self.special_id(backend, t)) for t, on in ((BOS_TOKEN, bos), (EOS_TOKEN, eos)) if on]
            single = " ".join([*([f"{BOS_TOKEN}:0"] if bos else []), "$A:0", *([f"{EOS_TOKEN}:0"] if eos else [])])
            backend.post_processor = processors.TemplateProcessing(single=single, special_tokens=used)
        side = config.get("padding_side", DEFAULT_PADDING_SIDE)
        backend.enable_truncation(max_length=context_length)
        backend.enable_padding(direction=side, pad_id=self.pad_id, pad_token=self.token(backend, self.pad_id),
                               length=context_length)  # fmt: skip
        self.backend = backend

    def config(self) -> dict:
        """``tokenizer_config.json`` beside the tokenizer ({} without it); token entries as their content."""
        path = self.folder / CONFIG_FILE
        if not path.is_file():
            return {}
        config = json.loads(path.read_text())
        pad = config.get("pad_token")
        if isinstance(pad, dict):  # AddedToken serialised
            config["pad_token"] = pad.get("content", PAD_TOKEN)
        return config

    def special_id(self, backend, token: str) -> int:
        index = backend.token_to_id(token)
        if index is None:
            raise BackboneError(f"{self.file} has no token {token!r}: it is not a Gemma tokenizer.json")
        return int(index)

    @staticmethod
    def token(backend, index: int) -> str:
        return str(backend.id_to_token(index))

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        """K texts -> K x L ids: cleaned, tokenized with the file's special tokens, truncated / padded to L."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        encodings = self.backend.encode_batch([self.clean_fn(text) for text in texts])
        return torch.tensor([encoding.ids for encoding in encodings], dtype=torch.long)
