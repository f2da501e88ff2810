"""The one-cycle learning-rate schedule, registered with Keras: optimizers saved inside model files refer to it."""

from __future__ import annotations

import math

from digitlab.compute.backend import keras as _keras

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
