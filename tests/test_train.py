"""Training: resuming only the same work (to the same checkpoint bytes), bad input, and checkpoints."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch
from conftest import TINY_TRAINING, make_params

from depthcore.data.store import Store
from depthcore.training.checkpoint import CheckpointError, build_from_checkpoint, load_checkpoint
from depthcore.training.loop import TrainingError
from depthcore.training.run import build_phase_model, build_run, train_model

SMALL = TINY_TRAINING
SMALL_COARSE = SMALL | {"adapter": "coarse_refine", "adapters.coarse_refine.hidden": 8}
RECIPE_SMOKE = {"train.preset": "probe3d", "train.max_epochs": 1, "train.flip": "none"}


def run_paths(pipeline, tmp_path, name="model"):
    """The offline pipeline's inputs, with this test's own model, metrics and curves."""
    return dataclasses.replace(
        pipeline,
        model=tmp_path / f"{name}.safetensors",
        train_metrics=tmp_path / f"{name}.json",
        train_curves=tmp_path / f"{name}.csv",
    )


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def full_run(pipeline, tmp_path_factory):
    """One uninterrupted training of SMALL (2 epochs, resume key 'k'), shared by the tests that read a finished run:
    its paths, its summary and the epochs it trained."""
    epochs = []
    paths = run_paths(pipeline, tmp_path_factory.mktemp("full"), "full")
    summary = train_model(
        make_params(SMALL), paths, resume_key="k", progress=False, on_epoch_end=lambda e, r: epochs.append(e)
    )
    return paths, summary, epochs


def test_resume_skips_finished_epochs_and_writes_the_same_checkpoint(pipeline, full_run, tmp_path):
    params = make_params(SMALL)
    full, _, full_epochs = full_run
    assert full_epochs == [1, 2] and not full.resume_state.exists()
    epochs = []

    def record(epoch, row, stop_at=None):
        epochs.append(epoch)
        if epoch == stop_at:
            raise KeyboardInterrupt

    killed = run_paths(pipeline, tmp_path, "killed")
    with pytest.raises(KeyboardInterrupt):
        train_model(params, killed, resume_key="k", progress=False, on_epoch_end=lambda e, r: record(e, r, 1))
    assert killed.resume_state.exists() and not killed.model.exists()
    epochs.clear()
    train_model(params, killed, resume_key="k", progress=False, on_epoch_end=record)
    assert epochs == [2]  # epoch 1 was not trained again
    assert sha(killed.model) == sha(full.model)  # the same bytes: DVC sees the same hash
    assert killed.train_curves.read_text() == full.train_curves.read_text()

    other = run_paths(pipeline, tmp_path, "other")  # killed, then rerun for other inputs: a fresh start
    with pytest.raises(KeyboardInterrupt):
        train_model(params, other, resume_key="old", progress=False, on_epoch_end=lambda e, r: record(e, r, 1))
    epochs.clear()
    train_model(params, other, resume_key="new", progress=False, on_epoch_end=record)
    assert epochs == [1, 2] and sha(other.model) == sha(full.model)


def test_curves_start_with_the_untrained_model(full_run):
    paths, summary, _ = full_run
    rows = paths.train_curves.read_text().splitlines()
    assert rows[0] == "phase,epoch,lr,train_loss,val_loss" and len(rows) == 1 + 3
    assert rows[1].startswith(",0,") and rows[1].split(",")[3] == ""  # epoch 0: validation only
    meta, _ = load_checkpoint(paths.model)
    assert meta["best_epoch"] == summary["best_epoch"] and [r["epoch"] for r in meta["history"]] == [0, 1, 2]


def test_non_finite_loss_stops_and_keeps_last_good_state(pipeline, tmp_path, monkeypatch):
    import depthcore.training.run as run_module

    paths, run, real = run_paths(pipeline, tmp_path), {}, run_module.build_phase_model
    monkeypatch.setattr(run_module, "build_phase_model", lambda *a: run.setdefault("model", real(*a)))

    def poison(epoch, row):  # after epoch 1 has been saved, make every later prediction NaN
        run["model"].refine.out_conv.bias.data.fill_(float("nan"))

    joint = SMALL_COARSE | {"adapters.coarse_refine.training": "joint"}
    with pytest.raises(TrainingError, match="non-finite loss .* epoch 2.*kept in"):
        train_model(make_params(joint), paths, resume_key="k", progress=False, on_epoch_end=poison)
    saved = torch.load(paths.resume_state, weights_only=True)
    assert saved["epoch"] == 1 and all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    assert not paths.model.exists()


def test_checkpoint_is_self_describing_and_refuses_other_adapter_and_features(pipeline, full_run, tmp_path):
    paths = full_run[0]
    meta, state = load_checkpoint(paths.model)
    assert meta["adapter"] == "msa" and meta["loss"] == "l1" and meta["train"]["epochs"] == 2
    features = Store(pipeline.features).attrs
    model = build_from_checkpoint(meta, state, adapter="msa", features_attrs=features)
    params = make_params(SMALL)
    reference = build_phase_model(params, build_run(params, paths), 0, params.adapter_config.phases()[0])
    assert model.state_dict().keys() == reference.state_dict().keys()
    with pytest.raises(CheckpointError, match="holds adapter 'msa' but params ask for 'eigen'"):
        build_from_checkpoint(meta, state, adapter="eigen")
    other = dict(features) | {"weights": {"model": "RN50-quickgelu", "pretrained": "openai"}}
    with pytest.raises(CheckpointError, match=r"other CLIP features \(differing: \['weights'\]\)"):
        build_from_checkpoint(meta, state, adapter="msa", features_attrs=other)
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.safetensors")


def test_two_stage_training_freezes_the_coarse_net_in_stage_two(pipeline, tmp_path):
    paths = run_paths(pipeline, tmp_path)
    params = make_params(SMALL_COARSE | {"train.epochs": 1})
    stages = []
    train_model(params, paths, resume_key="k", progress=False, on_epoch_end=lambda e, r: stages.append(r["phase"]))
    assert stages == ["coarse", "refine"]
    first = paths.model.with_name("model.coarse.safetensors")
    assert not first.exists()  # the first stage's checkpoint is not left behind
    meta, state = load_checkpoint(paths.model)
    assert [(r["phase"], r["epoch"]) for r in meta["history"]] == [
        ("coarse", 0),
        ("coarse", 1),
        ("refine", 0),
        ("refine", 1),
    ]
    # stage 2 trained the refine layers only: the coarse weights equal those a coarse-only run of stage 1 ends with
    coarse_only = run_paths(pipeline, tmp_path, "coarse_only")
    joint = SMALL_COARSE | {
        "train.epochs": 1,
        "adapters.coarse_refine.mode": "coarse",
        "adapters.coarse_refine.training": "joint",
    }
    train_model(make_params(joint), coarse_only, resume_key=None, progress=False)
    _, reference = load_checkpoint(coarse_only.model)
    for name, value in reference.items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0)
    assert any(k.startswith("refine.") for k in state) and meta["train"]["lr"] == 1e-3


def test_select_last_trains_without_a_val_split(pipeline, tmp_path):
    import dataclasses as dc

    from depthcore.data.splits import write_validation_split

    paths = dc.replace(run_paths(pipeline, tmp_path), split=tmp_path / "split.json")
    write_validation_split(pipeline.dataset, paths.split, val_fraction=0.0, seed=0)
    params = make_params(SMALL | {"data.val_fraction": 0, "train.select": "last"})
    summary = train_model(params, paths, resume_key=None, progress=False)
    assert summary["best_epoch"] == 2  # the last epoch, with no val metrics to select on
    assert "val_loss" not in summary


def test_the_kept_epoch_has_the_lowest_validation_loss_recomputed_by_hand(pipeline, tmp_path):
    """val_loss is the run's own masked L1 of the flip-averaged prediction on the val images (no ground truth
    the loss does not read), and select: val keeps the epoch where it is lowest."""
    from torch.utils.data import DataLoader

    from depthcore.models.predict import predict_crop
    from depthcore.training.checkpoint import build_from_checkpoint

    paths = run_paths(pipeline, tmp_path)
    params = make_params(SMALL | {"train.epochs": 3})
    summary = train_model(params, paths, resume_key=None, progress=False)
    meta, state = load_checkpoint(paths.model)
    losses = [row["val_loss"] for row in meta["history"]]
    assert summary["best_epoch"] == min(range(len(losses)), key=losses.__getitem__)
    model = build_from_checkpoint(meta, state).eval()
    errors, pixels = 0.0, 0
    for batch in DataLoader(build_run(params, paths).val_set, batch_size=1):
        pred, target = predict_crop(model, batch), batch["depth"]
        valid = target > 0
        errors, pixels = errors + (pred - target).abs()[valid].sum().item(), pixels + int(valid.sum())
    assert len(build_run(params, paths).val_set) == 2  # one val batch of 2: its masked mean is the pixel mean
    assert summary["val_loss"] == pytest.approx(errors / pixels, rel=1e-4)


def test_random_streams_are_seeded_independent_and_repeatable():
    from depthcore.seeding import stream_seed, torch_generator

    assert stream_seed(0, "jitter", 0, 3) != stream_seed(0, "shuffle", 0, 4)  # was equal before one seeding point
    assert len({stream_seed(s, p, 0, e) for s in (0, 1) for p in ("shuffle", "jitter", "flip") for e in (0, 1)}) == 12
    draw = torch.rand(4, generator=torch_generator(7, "shuffle", 1, 2))
    torch.testing.assert_close(draw, torch.rand(4, generator=torch_generator(7, "shuffle", 1, 2)))
    with pytest.raises(ValueError, match="unknown random stream 'dropout'"):
        stream_seed(0, "dropout")


def test_flip_average_takes_the_loss_on_the_mean_of_the_two_clamped_passes(pipeline):
    from types import SimpleNamespace

    from torch.utils.data import default_collate

    from depthcore.models.predict import upsample_to
    from depthcore.training.loop import training_prediction
    from depthcore.training.settings import training_settings

    coarse = SMALL_COARSE | {"adapters.coarse_refine.mode": "coarse", "adapters.coarse_refine.training": "joint"}
    params = make_params(coarse | {"train.flip": "average", "train.color_jitter": 0.0})
    run = build_run(params, pipeline)
    assert run.train_set.with_flipped and run.train_set.flip == "none"  # both views; no random flip on top
    model = build_phase_model(params, run, 0, params.adapter_config.phases()[0])
    with torch.no_grad():  # raw outputs beyond [0, 10], so that the clamp matters
        model.coarse.net.fc2.weight.mul_(300.0)
    batch = default_collate([run.train_set[i] for i in range(len(run.train_set))])
    job = SimpleNamespace(model=model, settings=training_settings(params, ""), features=None)  # cached features
    pred = training_prediction(job, batch, torch.Generator())
    # by hand: each pass (the image; the mirror image: its own cached features, mirrored RGB) clamped, averaged
    raw = model.coarse(batch)
    assert (raw < 0).any() and (raw > 10).any()
    first = raw.clamp(0.0, 10.0)
    second = model.coarse({"clip_layer4": batch["clip_layer4_flipped"]}).clamp(0.0, 10.0).flip(-1)
    expected = 0.5 * (first + second)
    torch.testing.assert_close(pred, expected)
    size = run.train_set.image_size
    loss = run.loss(upsample_to(pred, size), batch)
    (grad,) = torch.autograd.grad(loss, model.coarse.net.fc2.bias)
    (by_hand,) = torch.autograd.grad(run.loss(upsample_to(expected, size), batch), model.coarse.net.fc2.bias)
    torch.testing.assert_close(grad, by_hand)
    # flip: random is one pass on the batch as loaded
    job.settings = training_settings(make_params(coarse | {"train.flip": "random"}), "")
    torch.testing.assert_close(training_prediction(job, batch, torch.Generator()), raw.clamp(0.0, 10.0))


def test_the_state_is_written_in_the_background_from_a_copy_taken_at_the_epoch_end(tmp_path):
    from depthcore.training.loop import StateWriter, state_of

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()  # a momentum buffer in the optimizer's state
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    momentum = optimizer.state_dict()["state"][0]["momentum_buffer"].clone()
    with StateWriter() as writer:
        writer.submit(tmp_path / "state.pt", state_of("k", 1, model, optimizer, schedule, scaler, [], {}))
        with torch.no_grad():  # training goes on while the state is written: the file keeps the epoch's values
            for p in model.parameters():
                p.add_(1.0)
            optimizer.state[model.weight]["momentum_buffer"].add_(1.0)
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    assert saved["epoch"] == 1 and saved["resume_key"] == "k"
    for key, value in before.items():
        torch.testing.assert_close(saved["state_dict"][key], value, rtol=0, atol=0)
    torch.testing.assert_close(saved["optimizer"]["state"][0]["momentum_buffer"], momentum, rtol=0, atol=0)
    writer.submit(tmp_path, {"epoch": 2})  # a failed write (onto a folder) is raised by the next wait
    with pytest.raises(OSError):
        writer.wait()


def test_a_recipe_run_records_its_recipe_length_and_loss(pipeline, tmp_path):
    import json

    probe = {"adapter": "linear_probe", "adapters.linear_probe.layers": ["layer4"], "adapters.linear_probe.upsample": 1}
    params = make_params(SMALL | probe | {"adapters.linear_probe.class_token": False} | RECIPE_SMOKE)
    paths = run_paths(pipeline, tmp_path)
    metrics = train_model(params, paths, resume_key=None, progress=False)
    meta, _ = load_checkpoint(paths.model)
    n = meta["length"]["train_images"]
    assert meta["loss"] == "probe3d_depth" and meta["train"]["schedule"] == "warmup_cosine"
    assert meta["length"] == {
        "recipe": "probe3d",
        "train_images": n,
        "steps_per_epoch": -(-n // 8),
        "steps": -(-n // 8),  # capped at 1 epoch
        "recipe_iterations": None,
        "recipe_epochs": 10,
    }
    assert json.loads(paths.train_metrics.read_text())["steps"] == metrics["steps"] == -(-n // 8)
