"""Learning-rate schedules: per step (cosine, one-cycle) or per epoch (exponential, plateau)."""

from __future__ import annotations

import math

from digitlab.backend import keras as _keras
from digitlab.config import TrainingConfig

keras = _keras()


@keras.saving.register_keras_serializable(package="digitlab")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Rise linearly from peak/25 to `peak` over the warm-up, then fall along a cosine to peak/1e4."""

    def __init__(self, peak: float, total_steps: int, warmup_fraction: float = 0.25):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_fraction = float(warmup_fraction)

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        warmup = max(1.0, self.total_steps * self.warmup_fraction)
        start, end = self.peak / 25.0, self.peak / 1e4
        rising = start + (self.peak - start) * step / warmup
        progress = ops.clip((step - warmup) / max(1.0, self.total_steps - warmup), 0.0, 1.0)
        falling = end + (self.peak - end) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < warmup, rising, falling)

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_fraction": self.warmup_fraction}


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
