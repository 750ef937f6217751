"""The references' recipes (train.preset: dinov2 | dinov3 | probe3d): their settings on a training set of a given
size, the params keys a run declares, and the schema's rules for presets and recipes."""

from __future__ import annotations

import pytest
import torch
from conftest import default_raw, make_params

from depthcore.config.overrides import with_overrides
from depthcore.config.params import validate_params
from depthcore.errors import ConfigError
from depthcore.training.inputs import run_keys
from depthcore.training.loop import make_optimizer
from depthcore.training.recipes import recipe_record
from depthcore.training.schedules import warmup_steps
from depthcore.training.settings import training_settings

PROBE = {"adapter": "linear_probe", "backbone": "dinov2_vits14"}


def recipe(name: str, **more):
    return make_params(PROBE | {"train.preset": name} | more)


def test_dinov3_runs_38400_iterations_of_16_as_epochs_of_this_training_set():
    params = recipe("dinov3")
    settings = training_settings(params, "", train_images=100)  # 7 steps per epoch: 38,400 / 7 = 5,485.7
    assert (settings.epochs, settings.batch_size, settings.optimizer) == (5486, 16, "adamw")
    assert (settings.lr, settings.weight_decay, settings.schedule, settings.grad_clip) == (3e-4, 1e-4, "onecycle", 35.0)
    assert warmup_steps(settings, 7) == 12800  # the published warm-up, to the step
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], settings)
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.99)  # config-nyu.yaml's AdamW betas
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == 1e-4
    assert params.loss_name == "dinov3_sigloss" and params.loss_config.warmup_iterations == 100
    record = recipe_record(params, settings, train_images=100)
    assert record == {
        "recipe": "dinov3",
        "train_images": 100,
        "steps_per_epoch": 7,
        "steps": 38402,
        "recipe_iterations": 38400,
        "recipe_epochs": None,
    }
    with pytest.raises(ValueError, match="training set's size"):
        training_settings(params, "")


def test_probe3d_and_dinov2_recipes():
    probe3d = training_settings(recipe("probe3d"), "", train_images=100)
    assert (probe3d.epochs, probe3d.batch_size, probe3d.lr, probe3d.schedule) == (10, 8, 5e-4, "warmup_cosine")
    assert (probe3d.warmup_epochs, probe3d.final_lr_fraction, probe3d.grad_clip) == (1.5, 0.01, 0.0)
    capped = training_settings(recipe("probe3d", **{"train.max_epochs": 2}), "", train_images=100)
    assert capped.epochs == 2 and capped.warmup_epochs == pytest.approx(0.3)  # the warm-up shortened in proportion
    dinov2 = training_settings(recipe("dinov2"), "", train_images=716)  # 358 steps per epoch: 107.3 epochs
    assert (dinov2.epochs, dinov2.batch_size, dinov2.schedule) == (107, 2, "mmcv_cosine")
    assert (dinov2.warmup_epochs, dinov2.final_lr_fraction) == (12800 / 358, 1e-8)
    assert recipe("dinov2").loss_name == "dinov2_sigloss" and recipe("probe3d").loss_name == "probe3d_depth"


def test_run_keys_declare_the_recipe_in_effect_and_not_the_keys_it_replaces():
    keys = run_keys(recipe("dinov3"))
    assert {"recipes.dinov3.iterations", "recipes.dinov3.warmup", "recipes.dinov3.loss", "train.preset"} <= set(keys)
    assert {"losses.dinov3_sigloss.warmup_iterations", "losses.dinov3_sigloss.gradient_weight"} <= set(keys)
    assert not {"loss", "train.lr", "train.grad_clip", "train.epochs"} & set(keys)
    assert not any(key.startswith(("recipes.dinov2", "presets.", "losses.l1")) for key in keys)
    custom = make_params(PROBE | {"train.preset": "custom", "train.schedule": "warmup_cosine"})
    assert {"train.warmup_epochs", "train.final_lr_fraction", "loss"} <= set(run_keys(custom))
    onecycle = make_params(PROBE | {"train.preset": "custom", "train.schedule": "onecycle"})
    assert "train.warmup_epochs" in run_keys(onecycle) and "train.final_lr_fraction" not in run_keys(onecycle)
    assert "train.warmup_epochs" not in run_keys(make_params(PROBE | {"train.preset": "custom"}))
    assert "train.beta2" in run_keys(custom) and "train.beta2" not in run_keys(
        make_params(PROBE | {"train.preset": "custom", "train.optimizer": "sgd"})
    )


def test_presets_and_recipes_set_exactly_the_keys_their_schedule_uses():
    def check(overrides):
        validate_params(with_overrides(default_raw(), overrides))

    check({"presets.linear_probe.schedule": "onecycle", "presets.linear_probe.warmup_epochs": 30.0})
    with pytest.raises(ConfigError, match=r"\['warmup_epochs'\] must be set exactly when used"):
        check({"presets.linear_probe.schedule": "onecycle"})
    with pytest.raises(ConfigError, match=r"\['beta2'\] must be set exactly when used"):
        check({"presets.msa.beta2": 0.999})
    with pytest.raises(ConfigError, match=r"\['final_lr_fraction'\] must be set exactly when used"):
        check({"recipes.dinov3.final_lr_fraction": 0.01})
    with pytest.raises(ConfigError, match="exactly one of iterations and epochs"):
        check({"recipes.probe3d.iterations": 1000})
    with pytest.raises(ConfigError, match="'huber' is not a loss"):
        check({"recipes.dinov2.loss": "huber"})
