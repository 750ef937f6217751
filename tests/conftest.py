"""Shared fixtures: the repository's params with overrides, a tiny offline pipeline built once per session with
the library functions the stages call (synthetic rooms, random CLIP, felzenszwalb), and the end-to-end tests'
offline DVC run, built once for all test processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from depthcore.config.offline import OFFLINE
from depthcore.config.overrides import with_overrides
from depthcore.config.params import Params, validate_params
from depthcore.config.paths import Paths
from depthcore.io import WriterLock
from depthcore.pipeline.build import build_inputs

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):  # one torch thread per worker: the workers already fill the cores
    torch.set_num_threads(1)
# The offline configuration with 6 rendered images, 2 per room: 3 rooms, one each for test, val and train.
TINY_DATA = {"data.synthetic.images": 6, "data.synthetic.views_per_room": 2}
# A short training of the published MSA at tiny widths (2 epochs, batch 2): what the training tests run.
TINY_TRAINING = {
    "train.preset": "custom",
    "train.epochs": 2,
    "train.batch_size": 2,
    "train.lr": 1e-3,
    "adapters.msa.widths": [32, 16, 16, 8, 8, 4],
}
OFFLINE_RUN_WAIT_S = 1200  # how long a worker waits for another's build of the shared offline run (~90 s in CI)


def tiny_backbone(seed: int = 0, embed_dim: int = 128):
    """A ModifiedResNet CLIP with one block per stage and width 8 (layer4: 256 channels), fast on a CPU."""
    import open_clip
    import torch

    from depthcore.models.backbones.clip import ClipBackbone

    torch.manual_seed(seed)
    model = open_clip.model.CLIP(
        embed_dim=embed_dim,
        vision_cfg={"layers": [1, 1, 1, 1], "width": 8, "head_width": 8, "image_size": 64},
        text_cfg={"width": 32, "heads": 2, "layers": 1},
        quick_gelu=True,
    )
    return ClipBackbone(model, model_name="RN50-quickgelu")


def default_raw() -> dict:
    """The repository's params.yaml as a dict (the one place defaults live)."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


def block_outputs(blocks: torch.nn.ModuleList, run) -> tuple[list, list, object]:
    """(inputs, outputs, result): every block's input and output tensors while ``run()`` runs a library's own
    forward (without gradients), and what ``run()`` returned; the hooks are removed afterwards."""
    inputs, outputs = [], []
    hooks = [b.register_forward_pre_hook(lambda _, args: inputs.append(args[0])) for b in blocks]
    hooks += [b.register_forward_hook(lambda _, args, out: outputs.append(out)) for b in blocks]
    try:
        with torch.no_grad():
            result = run()
    finally:
        for hook in hooks:
            hook.remove()
    return inputs, outputs, result


def make_params(overrides: dict | None = None, *, offline: bool = True) -> Params:
    """Validated params: the repository's defaults, the offline settings (6 images), then ``overrides``."""
    return validate_params(with_overrides(default_raw(), (OFFLINE | TINY_DATA if offline else {}) | (overrides or {})))


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module of tiny tensors (thread hand-offs would cost more than the work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Paths:
    """Paths of an offline pipeline up to the training inputs (6 synthetic images, random-RN50 features
    of layer2..4, head, zero-shot predictions, felzenszwalb segments), built once per session."""
    return build_inputs(make_params(), Paths().under(tmp_path_factory.mktemp("pipeline")))


@pytest.fixture(scope="session")
def synthetic_dataset(pipeline) -> Path:
    """Path of the prepared 6-image synthetic dataset.zarr (3 rooms), 480 x 640."""
    return pipeline.dataset


@pytest.fixture(scope="session")
def offline_run(tmp_path_factory):
    """A clone of this repository after a full offline ``dvc repro`` (6 images, tiny training), committed
    (:class:`clones.OfflineRun`; tests edit a copy of it). Built once per session: under pytest-xdist the first
    worker to ask builds it while holding a file lock in the folder every worker shares, the others wait and read
    what it recorded."""
    from clones import OfflineRun, build_offline_run

    root = tmp_path_factory.getbasetemp()
    shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    record = shared / "offline-run.json"
    with WriterLock(record, wait_s=OFFLINE_RUN_WAIT_S):  # one builder; the others wait for its record
        if not record.exists():
            built = build_offline_run(shared / "offline-run")
            record.write_text(json.dumps({"path": str(built.path), "status_before": sorted(built.status_before),
                                          "ran": sorted(built.ran)}))  # fmt: skip
    fields = json.loads(record.read_text())
    return OfflineRun(Path(fields["path"]), frozenset(fields["status_before"]), frozenset(fields["ran"]))
