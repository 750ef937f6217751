"""The train settings in effect for a run: the chosen adapter's published preset or params.yaml's own values,
per training phase, and what the chosen loss takes from them."""

from __future__ import annotations

from typing import Any

from depthcore.training.recipes import recipe_settings


def training_settings(params, phase: str, *, train_images: int | None = None):
    """The train section in effect for ``phase``: the chosen adapter's published preset (``presets.<adapter>``)
    under ``train.preset: published``, the values of the train section under ``custom``, a reference's recipe
    (``recipes.<name>``, :mod:`depthcore.training.recipes`: needs ``train_images``, the training set's size, to
    convert its length) under ``dinov2 | dinov3 | probe3d``; capped by ``train.max_epochs`` (a warm-up shortened
    in proportion)."""
    train = params.train
    if params.recipe is not None:
        if train_images is None:
            raise ValueError(f"train.preset {train.preset}: the recipe's length needs the training set's size")
        train = recipe_settings(train, params.recipe, train_images=train_images)
    elif train.preset == "published":
        train = train.model_copy(update=params.preset(phase).values())
    if train.max_epochs is not None and train.epochs > train.max_epochs:
        share = train.max_epochs / train.epochs
        train = train.model_copy(update={"epochs": train.max_epochs, "warmup_epochs": train.warmup_epochs * share})
    return train


def phase_settings(params, *, train_images: int | None = None) -> dict[str, Any]:
    """Phase name -> the train section in effect, for every training phase of the chosen adapter (a recipe's
    needs ``train_images``)."""
    return {
        phase.name: training_settings(params, phase.name, train_images=train_images)
        for phase in params.adapter_config.phases()
    }


def loss_smoothness(params) -> float:
    """The train section's smoothness weight the chosen loss adds (0 for a loss with its own, or none, and under
    a recipe, whose loss is the reference's)."""
    if not params.loss_config.uses_train_smoothness or params.recipe is not None:
        return 0.0
    return max(settings.smoothness for settings in phase_settings(params).values())


def is_live(params) -> bool:
    """Whether the run computes its backbone features live (params ``features: live``, for an adapter that reads
    any backbone layer) rather than reading ``backbone.zarr``."""
    return params.features == "live" and bool(params.adapter_config.cached_layers())


def loss_batch_keys(params) -> tuple[str, ...]:
    """The batch fields the chosen loss reads."""
    return params.loss_config.batch_keys(smoothness=loss_smoothness(params))
