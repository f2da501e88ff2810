"""Training speed by precision: float32 against mixed bfloat16, with Keras' and digitlab's batch norm.

Run: python bench/precision.py [--models deep-convnet fast-convnet] [--steps 40] [--rounds 3]
Each model is built under each setting and trained with Adam on generated MNIST-like digits, five
steps per call into TensorFlow as the recipes train: a warm-up of 10 batches (tracing and
compiling), then `--rounds` rounds of `--steps` batches, the settings taking turns; the figure is
the median round. The settings:
  float32                          the baseline
  mixed_bfloat16                   bfloat16 compute, float32 weights, digitlab's FusedBatchNormalization
  mixed_bfloat16, Keras batch norm the same with Keras' own BatchNormalization in its place
bfloat16 pays off where the CPU has AMX or AVX512_BF16 (`lscpu | grep -o 'amx_bf16\\|avx512_bf16'`).
Timings are of whichever CPU cores this machine has; on a shared machine read them as upper bounds.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator

import numpy as np

from digitlab import models
from digitlab.compute.backend import dtype_policy, keras

WARMUP_STEPS = 10
STEPS_PER_EXECUTION = 5
SETTINGS = (
    ("float32", "float32", True),
    ("mixed_bfloat16", "mixed_bfloat16", True),
    ("mixed_bfloat16, Keras batch norm", "mixed_bfloat16", False),
)


@contextlib.contextmanager
def batch_normalization(fused: bool) -> Iterator[None]:
    """Build the models with digitlab's fused batch norm, or with Keras' own in its place."""
    saved = models.FusedBatchNormalization
    if not fused:
        models.FusedBatchNormalization = keras().layers.BatchNormalization
    try:
        yield
    finally:
        models.FusedBatchNormalization = saved


def compiled_model(name: str, precision: str, fused: bool):
    with dtype_policy(precision), batch_normalization(fused):
        model = models.create(name)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", steps_per_execution=STEPS_PER_EXECUTION)
    return model


def seconds_to_train(model, images: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
    start = time.perf_counter()
    model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["deep-convnet", "fast-convnet"])
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per round (a multiple of 5)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per setting, taken in turn")
    parser.add_argument("--batch-size", type=int, default=128)
    arguments = parser.parse_args()
    generator = np.random.default_rng(0)
    images = generator.integers(1, 256, size=(arguments.steps * arguments.batch_size, 28, 28), dtype=np.uint8)
    images[generator.random(images.shape) < 0.8] = 0  # MNIST-like: four pixels in five are blank
    labels = generator.integers(0, 10, size=len(images))
    warmup = WARMUP_STEPS * arguments.batch_size
    for name in arguments.models:
        built = {}
        for label, precision, fused in SETTINGS:
            built[label] = compiled_model(name, precision, fused)
            seconds_to_train(built[label], images[:warmup], labels[:warmup], arguments.batch_size)
        # Rounds taken in turn, so that a slow spell of a shared machine falls on every setting.
        seconds = {label: [] for label in built}
        for _ in range(arguments.rounds):
            for label, model in built.items():
                seconds[label].append(seconds_to_train(model, images, labels, arguments.batch_size))
        baseline = None
        for label, times in seconds.items():
            speed = len(images) / statistics.median(times)
            baseline = baseline or speed
            print(f"{name:14s} {label:34s} {speed:8,.0f} training images/s  {speed / baseline:4.2f}x float32",
                  flush=True)


if __name__ == "__main__":
    main()
