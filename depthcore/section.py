"""The base of every params section: a frozen pydantic model with no defaults.

``params.yaml`` is the one place where default values live: a section model declares names, types
and ranges only (a test checks that no field has a default), refuses unknown keys and is frozen.
Registered plugins (adapters, losses) define their own section (``adapters.<name>``, ``losses.<name>``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A validated, immutable params section. Numbers typed as strings ("1e-3") are read as numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (tuples become lists), e.g. for checkpoint metadata."""
        return self.model_dump(mode="json")
