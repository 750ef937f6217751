"""What DVC knows about the running stage: the hashes of its dependencies (files, folders and params values).

Stages run from the repository root (in DVC's experiment queue, a temporary copy of it); DVC sets
``DVC_STAGE`` to the stage's name. Used to key resumable work on the stage's exact inputs, and by
train_inputs to record what a run reads.
"""

from __future__ import annotations

import os
from typing import Any

from depthcore.errors import DepthcoreError


def dependency_hashes(*, required: bool = False) -> dict[str, Any] | None:
    """DVC's hashes of the running stage's dependencies (path or params file -> hash or values); None outside
    ``dvc repro`` / ``dvc exp run``. When DVC cannot tell: an error if ``required``, else None (the hashes then
    only serve resuming, an optimisation)."""
    name = os.environ.get("DVC_STAGE")
    if not name:
        return None
    from dvc.repo import Repo

    try:
        stage = Repo(".").stage.collect(name)[0]
        return {str(dep.def_path): dep.get_hash().value for dep in stage.deps}
    except Exception as exc:
        message = f"cannot read the input hashes of stage {name} from DVC ({type(exc).__name__}: {exc})"
        if required:
            raise DepthcoreError(message) from exc
        print(message)
        return None
