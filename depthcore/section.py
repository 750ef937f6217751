"""The base of every params section: a frozen pydantic model with no defaults.

``params.yaml`` is the one place where default values live: a section model declares names, types
and ranges only (a test checks that no field has a default), refuses unknown keys and is frozen.
Adapters define their own section (``adapters.<name>``) by subclassing :class:`AdapterConfig`.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A validated, immutable params section. Numbers typed as strings ("1e-3") are read as numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (tuples become lists), e.g. for checkpoint metadata."""
        return self.model_dump(mode="json")


class AdapterConfig(Section):
    """Settings of one adapter. Says which batch fields the adapter reads, so that the data pipeline
    (and DVC) load exactly those: ``rgb``, ``depth``, ``zeroshot``, ``segments`` and ``clip_<layer>`` for
    cached CLIP layers; ``needs_head`` / ``needs_shallow`` for the small CLIP artifacts."""

    @abstractmethod
    def batch_keys(self) -> tuple[str, ...]:
        """The batch fields the adapter reads."""

    def cached_layers(self) -> tuple[str, ...]:
        """The cached CLIP layers the adapter reads (from its batch keys)."""
        return tuple(key.removeprefix("clip_") for key in self.batch_keys() if key.startswith("clip_"))

    def needs_head(self) -> bool:
        """Whether the adapter needs the DepthCLIP head (text embeddings) artifact."""
        return False

    def needs_shallow(self) -> bool:
        """Whether the adapter computes CLIP's shallow layers itself (needs their weights artifact)."""
        return False

    def phases(self) -> tuple[str, ...]:
        """The adapter's training phases, in order ('' = one phase for the whole model)."""
        return ("",)

    @abstractmethod
    def published_training(self, phase: str = "") -> dict:
        """The authors' training settings for ``phase`` (keys of the train section), for train.preset: published."""
