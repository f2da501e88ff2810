"""Learning-rate schedules: per step (cosine, one-cycle) or per epoch (exponential, plateau)."""

from __future__ import annotations

from digitlab.compute.backend import keras as _keras
from digitlab.models.one_cycle import OneCycle
from digitlab.recipes.config import TrainingConfig

keras = _keras()


def learning_rate(config: TrainingConfig, total_steps: int):
    """What the optimizer is given: a number, or a per-step schedule."""
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=total_steps, alpha=config.min_learning_rate / config.learning_rate
        )
    if config.schedule == "one-cycle":
        return OneCycle(config.learning_rate, total_steps, config.warmup_fraction)
    return config.learning_rate


def epoch_callbacks(config: TrainingConfig) -> list:
    """Callbacks that change the learning rate between epochs."""
    if config.schedule == "exponential":
        return [keras.callbacks.LearningRateScheduler(
            lambda epoch: config.learning_rate * config.decay_rate**epoch
        )]
    if config.schedule == "plateau":
        return [keras.callbacks.ReduceLROnPlateau(
            monitor=config.plateau_monitor, factor=config.plateau_factor,
            patience=config.plateau_patience, min_lr=config.min_learning_rate, verbose=1,
        )]
    return []


def optimizer(config: TrainingConfig, total_steps: int):
    rate = learning_rate(config, total_steps)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(rate)
    return keras.optimizers.SGD(rate, momentum=config.momentum, nesterov=True)
