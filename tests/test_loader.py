"""The training loader: a sample decompresses only the CLIP view it uses, and workers that persist across
epochs draw each epoch's own flips."""

import dataclasses
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_store import flip_byte

from depthcore.data.batch import store_paths
from depthcore.data.samples import TrainingDataset
from depthcore.data.store import Store, StoreError
from depthcore.geometry.frame import crop_tensor
from depthcore.training.loop import train_loader


def test_a_sample_decompresses_only_the_view_it_uses(pipeline, tmp_path):
    features = tmp_path / "backbone.zarr"
    shutil.copytree(pipeline.features, features, ignore=shutil.ignore_patterns("layer2", "layer3"))
    flip_byte(features / "layer4" / "c" / "0" / "1" / "0" / "0" / "0", 5)  # image 0's mirror view, corrupt
    stores = store_paths(dataclasses.replace(pipeline, features=features))
    indices = np.arange(Store(pipeline.dataset).shape("rgb")[0])
    one_view = TrainingDataset(stores=stores, indices=indices, keys=("clip_layer4",))
    stored = Store(pipeline.features).read("layer4", 0)
    # the image's own view reads (its chunk alone is decompressed and checked); the mirror's chunk is never read
    np.testing.assert_array_equal(one_view[0]["clip_layer4"].numpy(), stored[0])
    both = TrainingDataset(stores=stores, indices=indices, keys=("clip_layer4",), with_flipped=True)
    with pytest.raises(StoreError, match="'layer4', image"):
        both[0]
    np.testing.assert_array_equal(both[1]["clip_layer4_flipped"].numpy(), Store(features).read("layer4", 1)[1])


def test_persistent_workers_draw_the_flips_of_each_epoch(pipeline):
    dataset = Store(pipeline.dataset)
    n = dataset.shape("rgb")[0]
    data = TrainingDataset(stores=store_paths(pipeline), indices=np.arange(n), keys=("rgb",), flip="random", seed=4)
    job = SimpleNamespace(train_set=data, settings=SimpleNamespace(batch_size=2), num_workers=1, seed=4, phase_index=0)
    loader = train_loader(job, torch.device("cpu"))
    pids, seen = set(), {}
    for epoch in range(4):
        loader.sampler.epoch = epoch
        for batch in loader:
            for index, rgb in zip(batch["index"].tolist(), batch["rgb"], strict=True):
                pixels = np.ascontiguousarray(crop_tensor(dataset.read("rgb", index).transpose(2, 0, 1), data.crop))
                stored = torch.from_numpy(pixels).float() / 255.0
                mirrored = torch.equal(rgb, stored.flip(-1))
                assert mirrored or torch.equal(rgb, stored)
                seen[epoch, index] = mirrored
        pids |= {w.pid for w in loader._iterator._workers}
    assert len(pids) == 1  # one worker for all four epochs
    assert seen == {(e, i): data.is_flipped(i, 0, e) for e in range(4) for i in range(n)}
    assert len(set(seen.values())) == 2
