"""Keras (TensorFlow) against ONNX Runtime for prediction: one image, and 10,000 at once.

Run: python bench/onnx_runtime.py [--models fast-convnet simple-convnet three-conv-batchnorm] [--repeats 3]
Each model is built untrained (speed does not depend on the weights), saved as .keras, exported
with `digitlab.inference.export.export_onnx`, and both files are loaded through `digitlab.inference.model_files`, so
the figures are those of `input_adapter` for each runtime, batching included. The batch is the
MNIST test set when it is found (DIGITLAB_DATA), else 10,000 generated images. Timings are of
whichever CPU cores this machine has; on a shared machine read them as upper bounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from digitlab import models
from digitlab.data.sources import load
from digitlab.errors import DigitlabError
from digitlab.inference.export import export_onnx
from digitlab.inference.model_files import predict_function_for

SINGLE_IMAGE_CALLS = 200
BATCH_SIZE = 10_000


def test_images(offline: bool = True) -> tuple[np.ndarray, str]:
    """The MNIST test images if they are at hand, else generated ones of MNIST-like sparsity."""
    try:
        return load("mnist:test", offline=offline).images[:BATCH_SIZE], "MNIST test images"
    except DigitlabError:
        generator = np.random.default_rng(0)
        images = generator.integers(1, 256, size=(BATCH_SIZE, 28, 28), dtype=np.uint8)
        images[generator.random(images.shape) < 0.8] = 0
        return images, "generated images (MNIST not found)"


def seconds_per_call(function: Callable[[], object], calls: int) -> float:
    """Median seconds of `calls` calls, after two warm-up calls."""
    function(), function()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(name: str, folder: Path, images: np.ndarray, repeats: int) -> dict[str, float]:
    keras_path = folder / f"{name}.keras"
    models.create(name).save(keras_path)
    onnx_path = export_onnx(keras_path, folder / f"{name}.onnx")
    predictors = {"keras": predict_function_for(keras_path), "onnx": predict_function_for(onnx_path)}
    figures = {}
    for runtime, predict in predictors.items():
        one = images[:1]
        figures[f"{runtime}_single"] = seconds_per_call(
            lambda predict=predict, one=one: predict(one), SINGLE_IMAGE_CALLS
        )
        figures[f"{runtime}_batch"] = min(
            seconds_per_call(lambda predict=predict: predict(images), 1) for _ in range(repeats)
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["fast-convnet", "simple-convnet", "three-conv-batchnorm"])
    parser.add_argument("--repeats", type=int, default=3, help="batch runs per runtime; the best is shown")
    arguments = parser.parse_args()
    images, description = test_images()
    print(f"{len(images):,} {description}; {os.cpu_count()} CPU cores; single image: median of "
          f"{SINGLE_IMAGE_CALLS} calls; batch: best of {arguments.repeats}, in batches of 1024")
    print(f"{'model':22} {'case':14} {'Keras':>10} {'ONNX Runtime':>13} {'Keras / ONNX':>13}")
    with tempfile.TemporaryDirectory() as folder:
        for name in arguments.models:
            figures = compare(name, Path(folder), images, arguments.repeats)
            cases = (("single", "1 image", "ms", 1e3), ("batch", f"{len(images):,} images", "s", 1))
            for case, label, unit, factor in cases:
                keras_time, onnx_time = figures[f"keras_{case}"], figures[f"onnx_{case}"]
                print(f"{name:22} {label:14} {keras_time * factor:7.2f} {unit:2} {onnx_time * factor:10.2f} {unit:2}"
                      f" {keras_time / onnx_time:12.1f}x")
            batch = len(images)
            print(f"{name:22} {'images/s':14} {batch / figures['keras_batch']:10,.0f} "
                  f"{batch / figures['onnx_batch']:13,.0f}")


if __name__ == "__main__":
    main()
