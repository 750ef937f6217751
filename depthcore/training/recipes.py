"""The references' own training recipes (``train.preset: dinov2 | dinov3 | probe3d``, params ``recipes.<name>``) as
train settings of this training set.

A recipe's length is published in optimiser steps (``iterations``: DINOv2, DINOv3) or epochs (Probe3D). Steps are
converted to epochs of the actual training set at run time: with S = ceil(train images / batch size) steps per
epoch, epochs = max(1, round(iterations / S)) (the loop trains whole epochs: the run takes epochs x S steps, within
S / 2 of the published count), and a warm-up of W iterations is W / S epochs (exactly W steps). The run records
both counts (:func:`recipe_record`: checkpoint metadata and ``metrics/train.json``).
"""

from __future__ import annotations

import math
from typing import Any


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Optimiser steps of one epoch (the loader keeps the last, partial batch)."""
    return math.ceil(train_images / batch_size)


def recipe_settings(train, recipe, *, train_images: int):
    """The train section ``train`` with ``recipe``'s values (its length and warm-up in epochs of a training set of
    ``train_images`` images); keys the recipe does not use keep the train section's values, unread."""
    if train_images < 1:
        raise ValueError("a recipe's length is converted on the training set, which is empty: check the split")
    per_epoch = steps_per_epoch(train_images, recipe.batch_size)
    if recipe.iterations is not None:
        epochs = max(1, round(recipe.iterations / per_epoch))
        warmup = None if recipe.warmup is None else recipe.warmup / per_epoch
    else:
        epochs, warmup = recipe.epochs, recipe.warmup
    values = {
        "epochs": epochs,
        "batch_size": recipe.batch_size,
        "optimizer": recipe.optimizer,
        "lr": recipe.lr,
        "weight_decay": recipe.weight_decay,
        "schedule": recipe.schedule,
        "grad_clip": recipe.grad_clip,
        "smoothness": 0.0,  # a recipe's loss is its own: no edge-aware smoothness is added
        "momentum": recipe.momentum,
        "beta2": recipe.beta2,
        "warmup_epochs": warmup,
        "final_lr_fraction": recipe.final_lr_fraction,
    }
    return train.model_copy(update={key: value for key, value in values.items() if value is not None})


def recipe_record(params, settings, *, train_images: int) -> dict[str, Any]:
    """What the run records about its length: the recipe (None under published / custom), the training images,
    the steps per epoch and the steps it takes (epochs x steps per epoch), and the recipe's published length."""
    per_epoch = steps_per_epoch(train_images, settings.batch_size)
    recipe = params.recipe
    return {
        "recipe": params.train.preset if recipe is not None else None,
        "train_images": train_images,
        "steps_per_epoch": per_epoch,
        "steps": settings.epochs * per_epoch,
        "recipe_iterations": None if recipe is None else recipe.iterations,
        "recipe_epochs": None if recipe is None else recipe.epochs,
    }
