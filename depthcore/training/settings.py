"""The train settings in effect for a run: the chosen adapter's published preset or params.yaml's own values,
per training phase, and what the chosen loss takes from them."""

from __future__ import annotations

from typing import Any


def training_settings(params, phase: str):
    """The train section in effect for ``phase``: the chosen adapter's published preset (``presets.<adapter>``)
    under ``train.preset: published``, the values of the train section under ``custom``; capped by
    ``train.max_epochs``."""
    train = params.train
    if train.preset == "published":
        train = train.model_copy(update=params.preset(phase).values())
    if train.max_epochs is not None and train.epochs > train.max_epochs:
        train = train.model_copy(update={"epochs": train.max_epochs})
    return train


def phase_settings(params) -> dict[str, Any]:
    """Phase name -> the train section in effect, for every training phase of the chosen adapter."""
    return {phase.name: training_settings(params, phase.name) for phase in params.adapter_config.phases()}


def loss_smoothness(params) -> float:
    """The train section's smoothness weight the chosen loss adds (0 for a loss with its own, or none)."""
    if not params.loss_config.uses_train_smoothness:
        return 0.0
    return max(settings.smoothness for settings in phase_settings(params).values())


def loss_batch_keys(params) -> tuple[str, ...]:
    """The batch fields the chosen loss reads."""
    return params.loss_config.batch_keys(smoothness=loss_smoothness(params))
