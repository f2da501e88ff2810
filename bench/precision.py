"""Training speed by precision: float32 against mixed bfloat16, with Keras' and digitlab's batch norm.

Run: python bench/precision.py [--models deep-convnet fast-convnet] [--steps 40] [--batch-size 128]
Each model is built under each setting and trained for `--steps` batches of generated digits with
Adam after a warm-up of 10 batches (tracing and compiling), five steps per call into TensorFlow,
as the recipes train. The settings:
  float32                          the baseline
  mixed_bfloat16                   bfloat16 compute, float32 weights, digitlab's FusedBatchNormalization
  mixed_bfloat16, Keras batch norm the same with Keras' own BatchNormalization in its place
bfloat16 pays off where the CPU has AMX or AVX512_BF16 (`lscpu | grep -o 'amx_bf16\\|avx512_bf16'`).
Timings are of whichever CPU cores this machine has; on a shared machine read them as upper bounds.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

import numpy as np

from digitlab import models
from digitlab.backend import dtype_policy, keras

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


def images_per_second(name: str, precision: str, fused: bool, steps: int, batch_size: int) -> float:
    with dtype_policy(precision), batch_normalization(fused):
        model = models.create(name)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", steps_per_execution=STEPS_PER_EXECUTION)
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, size=((steps + WARMUP_STEPS) * batch_size, 28, 28), dtype=np.uint8)
    labels = generator.integers(0, 10, size=len(images))
    warmup = WARMUP_STEPS * batch_size
    model.fit(images[:warmup], labels[:warmup], batch_size=batch_size, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(images[warmup:], labels[warmup:], batch_size=batch_size, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["deep-convnet", "fast-convnet"])
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per setting (a multiple of 5)")
    parser.add_argument("--batch-size", type=int, default=128)
    arguments = parser.parse_args()
    for name in arguments.models:
        baseline = None
        for label, precision, fused in SETTINGS:
            speed = images_per_second(name, precision, fused, arguments.steps, arguments.batch_size)
            baseline = baseline or speed
            print(f"{name:14s} {label:34s} {speed:8,.0f} training images/s  {speed / baseline:4.2f}x float32",
                  flush=True)


if __name__ == "__main__":
    main()
