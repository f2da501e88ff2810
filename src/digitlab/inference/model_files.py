"""Loading trained digit models from disk, and feeding them digitlab's uint8 (N, 28, 28) images.

A model is a Keras 3 `.keras` file, a training run folder holding `model.keras` and `model.onnx`,
a legacy `.h5` / `.hdf5` file saved by Keras 2 / tf.keras (old MNIST notebooks saved
`cnn_for_mnist.h5`), or an `.onnx` file, which runs with ONNX Runtime instead of TensorFlow.
Keras files are read by `digitlab.inference.keras_models`, which starts TensorFlow, and ONNX
files by `digitlab.inference.onnx_models`, which does not: this module imports neither until a
model of its kind is loaded, so that commands reading a run's `model.onnx` start in a fraction of
a second.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digitlab.inference.feeding import (
    DEFAULT_BATCH_SIZE,
    KERAS_SUFFIX,
    LEGACY_SUFFIXES,
    MODEL_FILENAME,
    ONNX_FILENAME,
    ONNX_SUFFIX,
    ModelError,
)
from digitlab.inference.onnx_models import OnnxModel, load_onnx_model, onnx_adapter

if TYPE_CHECKING:
    import keras

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "KERAS_SUFFIX",
    "LEGACY_SUFFIXES",
    "MODEL_FILENAME",
    "ONNX_FILENAME",
    "ONNX_SUFFIX",
    "ModelError",
    "OnnxModel",
    "fastest_model_file",
    "input_adapter",
    "load_model",
    "predict_function_for",
]


def _model_file(path: Path) -> Path:
    """The file to load for `path`, or a ModelError saying why there is none."""
    if not path.exists():
        raise ModelError(path, "no such file or folder")
    if path.is_dir():
        if (path / MODEL_FILENAME).is_file():
            return path / MODEL_FILENAME
        if (path / ONNX_FILENAME).is_file():
            return path / ONNX_FILENAME
        if (path / "saved_model.pb").is_file():
            raise ModelError(
                path,
                "is a TensorFlow SavedModel folder, which Keras 3 cannot load; load it with the "
                "TensorFlow it was made with and save it as .keras (model.save('model.keras'))",
            )
        raise ModelError(
            path,
            f"no {MODEL_FILENAME} or {ONNX_FILENAME} in this folder; give a .keras, .h5 or .onnx file "
            "or a training run folder",
        )
    return path




def load_model(path: str | Path) -> keras.Model | OnnxModel:
    """Load a digit model from a `.keras` file, a run folder, a legacy `.h5` / `.hdf5` file or an `.onnx` file.

    A run folder gives its `model.keras`, or its `model.onnx` when it has no `model.keras`
    (`fastest_model_file` picks the `model.onnx` of a folder that has both). Keras models are
    loaded uncompiled and in safe mode; an `.onnx` file gives an `OnnxModel` (an ONNX Runtime
    session on the CPU) and never starts TensorFlow. Either way the model is checked to take
    28x28 images (in some shape `input_adapter` can feed) and to output 10 classes, and every
    failure raises `ModelError` naming the file.
    """
    path = _model_file(Path(path).expanduser())
    if path.suffix.lower() == ONNX_SUFFIX:
        return load_onnx_model(path)
    from digitlab.inference.keras_models import load_keras_model

    return load_keras_model(path)


def input_adapter(
    model: keras.Model | OnnxModel, batch_size: int = DEFAULT_BATCH_SIZE
) -> Callable[[np.ndarray], np.ndarray]:
    """A function from uint8 (N, 28, 28) images to the model's float32 (N, 10) probabilities.

    Integer-input models (digitlab's own) get the raw pixels. Float-input models get pixels
    scaled to [0, 1], unless their first computing layer is a Rescaling layer, in which case
    they get 0..255 as floats; the images are reshaped to (N, 28, 28, 1), (N, 1, 28, 28) or
    (N, 784) as the model's input asks. Outputs that are not probabilities (logits) are put
    through a softmax. Raises ModelError if the model cannot take 28x28 images or does not
    output 10 classes.

    A Keras model is called on batches of `batch_size` with training=False; an `OnnxModel` is
    fed the same way, through its ONNX Runtime session.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(model, OnnxModel):
        return onnx_adapter(model, batch_size)
    from digitlab.inference.keras_models import keras_adapter

    return keras_adapter(model, batch_size)


def predict_function_for(path: str | Path, batch_size: int = DEFAULT_BATCH_SIZE) -> Callable[[np.ndarray], np.ndarray]:
    """The function from uint8 (N, 28, 28) images to float32 (N, 10) probabilities of the model at `path`.

    `path` is anything `load_model` takes: a `.keras`, `.h5` or `.onnx` file or a run folder.
    Shorthand for `input_adapter(load_model(path), batch_size)`.
    """
    return input_adapter(load_model(path), batch_size)


def fastest_model_file(path: str | Path) -> Path:
    """The file to predict with for `path`: the ONNX copy of a Keras model when it has an up-to-date one.

    On 2 CPU cores ONNX Runtime answered a single image 70 to 150 times sooner than Keras and
    10,000 images 1.4 to 1.8 times sooner (`bench/onnx_runtime.py`), and it starts without
    TensorFlow. So a run folder holding both `model.keras` and `model.onnx` gives `model.onnx`,
    and a `.keras` file gives the `.onnx` file of the same name beside it, unless that is older
    than the `.keras` file (a stale export) or onnxruntime is not installed. Any other path is
    returned as it is.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        keras_file, onnx_file = path / MODEL_FILENAME, path / ONNX_FILENAME
    elif path.suffix.lower() == KERAS_SUFFIX:
        keras_file, onnx_file = path, path.with_suffix(ONNX_SUFFIX)
    else:
        return path
    if not (keras_file.is_file() and onnx_file.is_file()):
        return path
    if onnx_file.stat().st_mtime < keras_file.stat().st_mtime:
        return keras_file
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return keras_file
    return onnx_file
