"""Loading trained digit models from disk, and feeding them digitlab's uint8 (N, 28, 28) images.

A model is a Keras 3 `.keras` file, a training run folder holding `model.keras` (or only
`model.onnx`), a legacy `.h5` / `.hdf5` file saved by Keras 2 / tf.keras (old MNIST notebooks
saved `cnn_for_mnist.h5`), or an `.onnx` file (`digitlab export`), which runs with ONNX Runtime
instead of TensorFlow. Keras models are always loaded in Keras's safe mode: a file that holds
Python code (a Lambda layer, a custom function) is refused, never run. Sequential models saved by
Keras 2.2, which Keras 3's loader misreads, are rebuilt from their config and weights.

`save_model` writes the files digitlab makes in Keras' own terms, so that plain
`keras.saving.load_model` opens them without digitlab.

digitlab's own models take the raw uint8 pixels and rescale them themselves. Models from
elsewhere often take float (N, 28, 28, 1) or (N, 784) input scaled to [0, 1]; `input_adapter`
reshapes and rescales the images to suit each model.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.compute.backend import keras as _started_keras
from digitlab.data.compressed import first_bytes
from digitlab.data.dataset import Dataset
from digitlab.errors import DigitlabError
from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

keras = _started_keras()

__all__ = [
    "MODEL_FILENAME",
    "ONNX_FILENAME",
    "ModelError",
    "OnnxModel",
    "fastest_model_file",
    "input_adapter",
    "keras_native_model",
    "load_model",
    "pixel_model",
    "predict_function_for",
    "save_model",
]

MODEL_FILENAME = "model.keras"
ONNX_FILENAME = "model.onnx"
KERAS_SUFFIX = ".keras"
ONNX_SUFFIX = ".onnx"
LEGACY_SUFFIXES = (".h5", ".hdf5")
DEFAULT_BATCH_SIZE = 1024

# Metadata keys that `digitlab.inference.export.export_onnx` writes into an ONNX file.
ONNX_MODEL_NAME_KEY = "digitlab.model"
ONNX_WEIGHT_COUNT_KEY = "digitlab.weights"

# Per-image input shapes that 28x28 images can be reshaped into; None in a model's shape
# matches any size.
_FEEDABLE_SHAPES = (
    (IMAGE_SIDE, IMAGE_SIDE),
    (IMAGE_SIDE, IMAGE_SIDE, 1),
    (1, IMAGE_SIDE, IMAGE_SIDE),
    (IMAGE_SIDE * IMAGE_SIDE,),
)
_SHAPE_ONLY_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Reshape,
    keras.layers.Flatten,
    keras.layers.Permute,
)
_UNREGISTERED = re.compile(r"Could not locate (class|function) '([^']+)'")
_MESSAGE_LENGTH = 200
_ONNX_INPUT_TYPES = {
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(float16)": np.float16,
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
}
# ONNX Runtime's messages start "[ONNXRuntimeError] : 1 : FAIL : Load model from PATH failed:"
# and then name the C++ source line and function before saying what is wrong.
_ONNX_RUNTIME_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : [A-Z_]+ : (Load model from .* failed:)?")
_ONNX_SOURCE_LOCATION = re.compile(r"^\S+\.(cc|cpp|h):\d+ \S*?\(.*?\) ")
_ZIP_SIGNATURE = b"PK\x03\x04"
_HDF5_SIGNATURE = b"\x89HDF"


class ModelError(DigitlabError, ValueError):
    """A model file that cannot be loaded, or a model that cannot classify 28x28 digits."""

    def __init__(self, source: str | Path, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


def _digitlab_custom_objects() -> dict[str, type]:
    """digitlab's custom layers by bare class name, importing (and so registering) them.

    Registration lets `.keras` files find them as "digitlab>Name"; the bare names let legacy
    .h5 files from Keras 2, which named such layers without a package, find them too.
    """
    from digitlab.models import layers as digitlab_layers
    from digitlab.models import one_cycle  # noqa: F401  (registers the one-cycle schedule)

    return {
        name: value
        for name, value in vars(digitlab_layers).items()
        if isinstance(value, type)
        and issubclass(value, keras.layers.Layer)
        and value.__module__ == digitlab_layers.__name__
    }


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


MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a .keras file's config.json: the model's description, not its weights


def _check_file_kind(path: Path) -> None:
    """Refuse files that are not Keras models before Keras gives a confusing error."""
    import h5py

    first_bytes(path, 4, ModelError)  # missing, unreadable or empty files fail here
    suffix = path.suffix.lower()
    is_zip = zipfile.is_zipfile(path)
    if suffix == KERAS_SUFFIX:
        if not is_zip:
            raise ModelError(
                path, "not a Keras model: .keras files are zip archives and this is not a zip archive"
            )
        try:
            with zipfile.ZipFile(path) as archive:
                config = next((member for member in archive.infolist() if member.filename == "config.json"), None)
        except (zipfile.BadZipFile, OSError) as error:
            raise ModelError(path, f"damaged .keras archive: {error}") from None
        if config is None:
            raise ModelError(path, "a zip archive but not a Keras model (no config.json inside)")
        if config.file_size > MAX_CONFIG_BYTES:
            raise ModelError(path, f"its config.json is {config.file_size:,} bytes; a digit model's is a few "
                                   f"kilobytes, and more than {MAX_CONFIG_BYTES:,} is refused unread")
    elif suffix in LEGACY_SUFFIXES:
        if not h5py.is_hdf5(path):
            raise ModelError(path, "not a Keras .h5 model: the file is not in HDF5 format")
    elif is_zip:
        raise ModelError(
            path, f"looks like a zip archive; if it is a Keras model, rename it to end in {KERAS_SUFFIX}"
        )
    elif h5py.is_hdf5(path):
        raise ModelError(path, "looks like an HDF5 file; if it is a Keras model, rename it to end in .h5")
    else:
        raise ModelError(
            path,
            "not a model file: expected a .keras file, a legacy .h5 file, an .onnx file or a training run folder",
        )


_PYTHON_CODE_REFUSED = (
    "refused: the model holds Python code (a Lambda layer or a custom function) that would "
    "run when it is loaded, and digitlab loads models in safe mode only; rebuild it without "
    "Lambda layers (use registered layers instead) and save it again"
)


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= _MESSAGE_LENGTH else text[: _MESSAGE_LENGTH - 3] + "..."


def _explain_load_failure(path: Path, error: Exception) -> str:
    text = str(error)
    legacy = path.suffix.lower() in LEGACY_SUFFIXES
    if "safe_mode" in text or "arbitrary code" in text:
        return _PYTHON_CODE_REFUSED
    if "No model config found" in text or "No model found in config" in text:
        return (
            "holds only weights, no model architecture; build the model in code and load them "
            f"with model.load_weights('{path.name}')"
        )
    unregistered = _UNREGISTERED.search(text)
    if unregistered:
        kind, name = unregistered.groups()
        advice = (
            "; Keras 3 may no longer ship it: rebuild the architecture in code and load the weights"
            if legacy
            else "; import the module that defines it (decorated with "
            "@keras.saving.register_keras_serializable) before loading"
        )
        return f"uses the {kind} {name!r}, which is not registered here{advice}"
    if legacy:
        return (
            f"Keras 3 cannot read this legacy Keras 2 / tf.keras .h5 model ({_first_line(error)}); "
            "open it with the tf.keras it was made with and re-save it as .keras "
            "(model.save('model.keras')), or rebuild the architecture in code and load the weights "
            f"with model.load_weights('{path.name}')"
        )
    return f"cannot be loaded as a Keras model: {_first_line(error)}"


def load_model(path: str | Path) -> keras.Model | OnnxModel:
    """Load a digit model from a `.keras` file, a run folder, a legacy `.h5` / `.hdf5` file or an `.onnx` file.

    A run folder gives its `model.keras`, or its `model.onnx` when it has no `model.keras`.
    Keras models are loaded uncompiled and in safe mode; an `.onnx` file gives an `OnnxModel`
    (an ONNX Runtime session on the CPU). Either way the model is checked to take 28x28 images
    (in some shape `input_adapter` can feed) and to output 10 classes, and every failure raises
    `ModelError` naming the file.
    """
    path = _model_file(Path(path).expanduser())
    if path.suffix.lower() == ONNX_SUFFIX:
        return _load_onnx_model(path)
    _check_file_kind(path)
    custom_objects = _digitlab_custom_objects()
    legacy = path.suffix.lower() in LEGACY_SUFFIXES
    try:
        with warnings.catch_warnings():
            # Keras 3 reads a Keras 2 model's input shape as an argument it advises against.
            warnings.filterwarnings("ignore", "Do not pass an `input_shape`", UserWarning)
            model = keras.saving.load_model(path, custom_objects=custom_objects, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, TypeError, KeyError, OSError...
        model = _rebuilt_keras2_model(path, custom_objects) if legacy else None
        if model is None:
            raise ModelError(path, _explain_load_failure(path, error)) from error
    if not isinstance(model, keras.Model):
        raise ModelError(path, f"holds a {type(model).__name__}, not a Keras model")
    _plan_input(model, path)
    return model


def _keras_native_config(value: Any, fused_name: str) -> Any:
    """A model config (nested dicts and lists) with the layers registered as `fused_name` made
    Keras' BatchNormalization and mixed-precision dtype policies made float32."""
    if isinstance(value, list):
        return [_keras_native_config(item, fused_name) for item in value]
    if not isinstance(value, dict):
        return value
    value = {key: _keras_native_config(item, fused_name) for key, item in value.items()}
    if value.get("registered_name") == fused_name:
        value |= {"module": "keras.layers", "class_name": "BatchNormalization", "registered_name": None}
    policy = value.get("config")
    if (isinstance(policy, dict) and str(value.get("class_name")).endswith("DTypePolicy")
            and str(policy.get("name")).startswith("mixed_")):
        value["config"] = {**policy, "name": "float32"}
    return value


def keras_native_model(model: keras.Model) -> keras.Model:
    """An uncompiled copy of `model`, with its weights, made of Keras' own layers where it can be.

    digitlab's FusedBatchNormalization becomes Keras' BatchNormalization (the same layer outside
    training, with the same four weights), and mixed-precision layers become float32 ones (their
    weights are float32 already). Saving the copy saves no optimizer.
    """
    from digitlab.models.layers import FusedBatchNormalization

    fused_name = keras.saving.get_registered_name(FusedBatchNormalization)
    copy = type(model).from_config(_keras_native_config(model.get_config(), fused_name))
    copy.set_weights(model.get_weights())
    return copy


def save_model(model: keras.Model, path: str | Path) -> None:
    """Write `model` to the `.keras` file `path` (or `.h5`, Keras' legacy format) in Keras' own terms.

    Plain `keras.saving.load_model(path)` opens the file in a Python that never imported digitlab
    and predicts as `model` does, for any model made of Keras layers: see `keras_native_model`.
    The file holds no optimizer; resuming training reads a run's checkpoints instead. A model with
    digitlab's LocallyConnected2D, which Keras 3 no longer ships, needs `import digitlab.models`
    (which registers it) before plain Keras can load it. `path` is written directly: give
    `digitlab.outputs.write_file` this function to write it atomically.
    """
    keras_native_model(model).save(path)


# --- Keras 2.2 .h5 files, which Keras 3's loader misreads ------------------------------------

# Keras 2.2 wrote he_normal and lecun_normal as VarianceScaling with distribution "normal",
# which was a truncated normal; Keras 3 knows only the later name.
_KERAS2_DISTRIBUTIONS = {"normal": "truncated_normal"}


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _keras3_values(value: Any) -> Any:
    """A Keras 2 config value (nested dicts and lists) with the names Keras 3 renamed mapped."""
    if isinstance(value, list):
        return [_keras3_values(item) for item in value]
    if not isinstance(value, dict):
        return value
    value = {key: _keras3_values(item) for key, item in value.items()}
    inner = value.get("config")
    if value.get("class_name") == "VarianceScaling" and isinstance(inner, dict):
        inner["distribution"] = _KERAS2_DISTRIBUTIONS.get(inner.get("distribution"), inner.get("distribution"))
    return value


def _accepted_options(layer_class: type) -> set[str]:
    """The config keys `layer_class(**config)` takes: its own arguments and those it passes on
    through **kwargs, up to keras.layers.Layer's."""
    accepted: set[str] = set()
    for cls in layer_class.__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(vars(cls)["__init__"]).parameters.values()
        accepted |= {parameter.name for parameter in parameters
                     if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)}
        if cls is keras.layers.Layer or all(parameter.kind != parameter.VAR_KEYWORD for parameter in parameters):
            break
    return accepted - {"self"}


def _keras3_layer(entry: dict[str, Any], custom_objects: dict[str, type], path: Path) -> keras.layers.Layer:
    """The Keras 3 layer for one layer entry of a Keras 2 Sequential config."""
    class_name = entry.get("class_name")
    if class_name == "Lambda":
        raise ModelError(path, _PYTHON_CODE_REFUSED)
    layer_class = custom_objects.get(class_name) or getattr(keras.layers, str(class_name), None)
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise ModelError(path, f"a Keras 2 model with the layer {class_name!r}, which Keras 3 does not have; rebuild "
                               f"the architecture in code and load the weights with model.load_weights('{path.name}')")
    config = _keras3_values(dict(entry.get("config") or {}))
    axis = config.get("axis")
    if isinstance(axis, list) and len(axis) == 1:  # Keras 2 wrote BatchNormalization's axis as [3]
        config["axis"] = axis[0]
    accepted = _accepted_options(layer_class)
    return layer_class.from_config({key: value for key, value in config.items() if key in accepted})


def _keras2_sequential(
    model_config: dict[str, Any], custom_objects: dict[str, type], path: Path
) -> keras.Model | None:
    """Build the Sequential model a Keras 2 config describes, its input from the first layer's
    `batch_input_shape`; None if the config is not of such a model."""
    if model_config.get("class_name") != "Sequential":
        return None
    config = model_config.get("config")
    # Keras 2.2.4 wrote the list of layers; later versions {"name": ..., "layers": [...]}.
    entries = config if isinstance(config, list) else (config or {}).get("layers")
    name = None if isinstance(config, list) else config.get("name")
    if not entries or not isinstance(entries, list):
        return None
    first = entries[0].get("config") or {}
    batch_shape = first.get("batch_input_shape")
    if batch_shape is None:
        return None
    inputs = keras.Input(batch_shape=tuple(batch_shape), dtype=first.get("dtype") or "float32")
    if entries[0].get("class_name") == "InputLayer":
        entries = entries[1:]
    layers = [_keras3_layer(entry, custom_objects, path) for entry in entries]
    return keras.Sequential([inputs, *layers], name=name)


def _load_keras2_weights(group: Any, model: keras.Model, path: Path) -> None:
    """Give every layer of `model` the weights stored for it by name in the h5py `group`, in the
    order of the layer group's `weight_names`."""
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in group:
            raise ModelError(path, f"holds no weights for its layer {layer.name!r}")
        layer_group = group[layer.name]
        values = [np.asarray(layer_group[_text(name)]) for name in layer_group.attrs.get("weight_names", [])]
        stored = [value.shape for value in values]
        needed = [tuple(weight.shape) for weight in layer.weights]
        if stored != needed:
            raise ModelError(
                path, f"the weights stored for layer {layer.name!r} have shapes {stored}; the layer needs {needed}"
            )
        layer.set_weights(values)


def _rebuilt_keras2_model(path: Path, custom_objects: dict[str, type]) -> keras.Model | None:
    """The Keras 2 Sequential model in the .h5 file `path`, rebuilt from its config and weights with
    h5py; None when the file holds something else, so that Keras 3's own error is reported."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            if "model_config" not in file.attrs:
                return None
            model = _keras2_sequential(json.loads(_text(file.attrs["model_config"])), custom_objects, path)
            if model is not None:
                _load_keras2_weights(file["model_weights"] if "model_weights" in file else file, model, path)
    except ModelError:
        raise
    except Exception:  # anything unexpected in the file: Keras 3's own error says more
        return None
    return model


@dataclass(frozen=True)
class _InputPlan:
    """How to turn uint8 (N, 28, 28) images into what a model takes."""

    image_shape: tuple[int, ...]
    dtype: np.dtype
    scale: float


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("N" if size is None else str(size) for size in shape) + ")"


def _matching_shape(model_shape: tuple[int | None, ...]) -> tuple[int, ...] | None:
    for candidate in _FEEDABLE_SHAPES:
        if len(candidate) == len(model_shape) and all(
            size is None or size == wanted for size, wanted in zip(model_shape, candidate)
        ):
            return candidate
    return None


def _starts_with_rescaling(model: keras.Model) -> bool:
    """Whether the first layer that computes anything is a Rescaling layer."""
    for layer in model.layers:
        if isinstance(layer, _SHAPE_ONLY_LAYERS):
            continue
        if isinstance(layer, keras.Model):
            return _starts_with_rescaling(layer)
        return isinstance(layer, keras.layers.Rescaling)
    return False


def _checked_image_shape(
    input_shape: tuple[int | None, ...], output_shape: tuple[int | None, ...], source: str | Path
) -> tuple[int, ...]:
    """The per-image shape to feed a model with these shapes, or a ModelError saying why none fits."""
    image_shape = _matching_shape(input_shape[1:])
    if image_shape is None:
        expected = " or ".join(_shape_text((None, *shape)) for shape in _FEEDABLE_SHAPES)
        raise ModelError(
            source,
            f"the model takes input of shape {_shape_text(input_shape)}, which 28x28 digit images "
            f"cannot be fed into (expected {expected})",
        )
    if len(output_shape) != 2 or output_shape[1] != NUM_CLASSES:
        raise ModelError(
            source,
            f"the model outputs shape {_shape_text(output_shape)}, expected (N, {NUM_CLASSES}): "
            f"one score per digit 0..9",
        )
    return image_shape


def _plan_input(model: keras.Model, source: str | Path) -> _InputPlan:
    """Check that the model takes 28x28 images and gives 10 classes; say how to feed it."""
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError, TypeError):
        raise ModelError(source, "the model has no fixed inputs and outputs (a subclassed model?)") from None
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(
            source,
            f"the model has {len(inputs)} inputs and {len(outputs)} outputs; "
            "a digit classifier has one of each",
        )
    image_shape = _checked_image_shape(tuple(inputs[0].shape), tuple(outputs[0].shape), source)
    dtype_name = keras.backend.standardize_dtype(inputs[0].dtype)
    if "int" in dtype_name:
        return _InputPlan(image_shape, np.dtype(dtype_name), 1.0)
    # Assumption: a float model without its own Rescaling layer was trained on pixels scaled to
    # [0, 1], as Keras's MNIST examples and most notebooks do (x_train / 255).
    scale = 1.0 if _starts_with_rescaling(model) else 1.0 / 255
    return _InputPlan(image_shape, np.dtype(np.float32), scale)


def _as_probabilities(scores: np.ndarray, source: str) -> np.ndarray:
    """Scores as probabilities; models ending in logits (not in softmax) get a softmax here."""
    if not np.all(np.isfinite(scores)):
        raise ModelError(source, "the model gave NaN or infinite outputs")
    already = np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)
    if already:
        return scores
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def _checked_images(images: np.ndarray | Dataset) -> np.ndarray:
    if isinstance(images, Dataset):
        return images.images
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"images must have shape (N, 28, 28), got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 pixels 0..255, got {images.dtype}")
    return images


def _adapted(images: np.ndarray, plan: _InputPlan) -> np.ndarray:
    """uint8 (N, 28, 28) images reshaped, converted and scaled as `plan` says."""
    batch = images.reshape((-1, *plan.image_shape))
    if batch.dtype != plan.dtype:
        batch = batch.astype(plan.dtype)
    if plan.scale != 1.0:
        batch = batch * np.asarray(plan.scale, dtype=plan.dtype)
    return batch


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

    The model is called on batches of `batch_size` with training=False: on CPU this was as fast
    as `model.predict` for tens of thousands of images and far faster for a few. An `OnnxModel`
    is fed the same way, through its ONNX Runtime session.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(model, OnnxModel):
        return _onnx_adapter(model, batch_size)
    source = f"model {model.name!r}"
    plan = _plan_input(model, source)

    def run_batch(batch: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(model(_adapted(batch, plan), training=False))

    return _batched(run_batch, batch_size, source)


def pixel_model(model: keras.Model) -> keras.Model:
    """The model as one that takes uint8 (N, 28, 28) pixels and gives probabilities, for training on.

    digitlab's own models take those already and are returned as they are. Any other is wrapped:
    reshaped, converted and scaled as `input_adapter` feeds it, with a softmax after it if its
    outputs are logits. Raises ModelError if the model cannot take 28x28 images.
    """
    plan = _plan_input(model, f"model {model.name!r}")
    probe = np.zeros((2, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    probe[1, 8:20, 12:16] = 255
    scores = keras.ops.convert_to_numpy(model(_adapted(probe, plan), training=False))
    gives_probabilities = bool(np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))
    if plan == _InputPlan((IMAGE_SIDE, IMAGE_SIDE), np.dtype(np.uint8), 1.0) and gives_probabilities:
        return model
    inputs = keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE), dtype="uint8", name="pixels")
    x = keras.layers.Reshape(plan.image_shape)(keras.ops.cast(inputs, plan.dtype.name))
    if plan.scale != 1.0:
        x = keras.layers.Rescaling(plan.scale)(x)
    x = model(x)
    if not gives_probabilities:
        x = keras.layers.Softmax(dtype="float32")(x)
    return keras.Model(inputs, x, name=model.name)


def _batched(
    run_batch: Callable[[np.ndarray], np.ndarray], step: int, source: str
) -> Callable[[np.ndarray], np.ndarray]:
    """The function from uint8 (N, 28, 28) images to probabilities that checks the images and
    gives them to `run_batch` (model scores) `step` at a time."""

    def predict(images: np.ndarray) -> np.ndarray:
        images = _checked_images(images)
        if len(images) == 0:
            return np.zeros((0, NUM_CLASSES), dtype=np.float32)
        scores = np.concatenate([np.asarray(run_batch(images[start : start + step]), dtype=np.float32)
                                 for start in range(0, len(images), step)])
        if scores.shape != (len(images), NUM_CLASSES):
            raise ModelError(source, f"the model gave outputs of shape {scores.shape} for {len(images)} images")
        return _as_probabilities(scores, source)

    return predict


def predict_function_for(path: str | Path, batch_size: int = DEFAULT_BATCH_SIZE) -> Callable[[np.ndarray], np.ndarray]:
    """The function from uint8 (N, 28, 28) images to float32 (N, 10) probabilities of the model at `path`.

    `path` is anything `load_model` takes: a `.keras`, `.h5` or `.onnx` file or a run folder.
    Shorthand for `input_adapter(load_model(path), batch_size)`.
    """
    return input_adapter(load_model(path), batch_size)


def fastest_model_file(path: str | Path) -> Path:
    """The file to serve for `path`: a run folder's `model.onnx` when it has one that is up to date.

    On 2 CPU cores ONNX Runtime answered a single image 70 to 150 times sooner than Keras and
    10,000 images 1.4 to 1.8 times sooner (`bench/onnx_runtime.py`), so a run folder holding both
    `model.keras` and `model.onnx` gives `model.onnx`, unless it is older than `model.keras` (a
    stale export) or onnxruntime is not installed. Any other path is returned as it is.
    """
    path = Path(path).expanduser()
    keras_file, onnx_file = path / MODEL_FILENAME, path / ONNX_FILENAME
    if not (path.is_dir() and keras_file.is_file() and onnx_file.is_file()):
        return path
    if onnx_file.stat().st_mtime < keras_file.stat().st_mtime:
        return keras_file
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return keras_file
    return onnx_file


# --- ONNX models, run with ONNX Runtime -----------------------------------------------------


class OnnxModel:
    """A digit model loaded from an `.onnx` file, run by ONNX Runtime on the CPU.

    It stands where a keras.Model does in digitlab's prediction code: `input_adapter` turns it
    into the same uint8 (N, 28, 28) -> float32 (N, 10) function, and it has a `name` and
    `count_params()` as Keras models do. Make one with `load_model("model.onnx")`.

    path      the file it was loaded from
    session   the `onnxruntime.InferenceSession`
    metadata  the file's metadata (`digitlab export` records the Keras model's name and weights)
    """

    def __init__(self, path: Path, session: Any) -> None:
        self.path = path
        self.session = session
        self.metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)
        self.name: str = self.metadata.get(ONNX_MODEL_NAME_KEY) or path.stem

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r})"

    def count_params(self) -> int:
        """The number of weights: as recorded at export, else counted in the file (with the `onnx`
        package, when it is installed), else 0."""
        recorded = self.metadata.get(ONNX_WEIGHT_COUNT_KEY, "")
        if recorded.isdigit():
            return int(recorded)
        try:
            import onnx
        except ImportError:
            return 0
        graph = onnx.load(str(self.path), load_external_data=False).graph
        return sum(math.prod(tensor.dims) for tensor in graph.initializer)


def _explain_onnx_failure(error: Exception) -> str:
    if "INVALID_PROTOBUF" in str(error):
        return "not an ONNX model: ONNX Runtime cannot parse the file as one"
    reason = _ONNX_SOURCE_LOCATION.sub("", _ONNX_RUNTIME_PREFIX.sub("", " ".join(str(error).split())))
    return f"ONNX Runtime cannot load this model: {_first_line(ValueError(reason))}"


def _load_onnx_model(path: Path) -> OnnxModel:
    """An OnnxModel for the `.onnx` file `path`, checked to classify 28x28 digits."""
    start = first_bytes(path, 4, ModelError)
    if start.startswith(_ZIP_SIGNATURE):
        raise ModelError(
            path, f"a zip archive, not an ONNX model; if it is a Keras model, rename it to end in {KERAS_SUFFIX}"
        )
    if start.startswith(_HDF5_SIGNATURE):
        raise ModelError(path, "an HDF5 file, not an ONNX model; if it is a Keras model, rename it to end in .h5")
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(path, "running ONNX models needs ONNX Runtime: pip install onnxruntime") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    # Idle threads sleep instead of spinning, leaving the cores to a server's HTTP work between
    # its one-image calls (bench/serve_load.py p99: 18 ms in two runs, against 18 and 26 spinning).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: no warnings about unused initializers
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime raises its own exception classes for each failure
        raise ModelError(path, _explain_onnx_failure(error)) from error
    model = OnnxModel(path, session)
    _plan_onnx_input(model)
    return model


def _plan_onnx_input(model: OnnxModel) -> tuple[_InputPlan, int | None]:
    """How to feed an ONNX model, and its fixed batch size if its input has one."""
    inputs, outputs = model.session.get_inputs(), model.session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(
            model.path,
            f"the model has {len(inputs)} inputs and {len(outputs)} outputs; a digit classifier has one of each",
        )
    # ONNX gives a named dimension ("N", "unk__12") as a string and an unknown one as None.
    input_shape = tuple(size if isinstance(size, int) else None for size in inputs[0].shape)
    output_shape = tuple(size if isinstance(size, int) else None for size in outputs[0].shape)
    image_shape = _checked_image_shape(input_shape, output_shape, model.path)
    dtype = _ONNX_INPUT_TYPES.get(inputs[0].type)
    if dtype is None:
        raise ModelError(model.path, f"the model takes {inputs[0].type} input; digit images need numbers")
    # Assumption, as for Keras models without a Rescaling layer: float models take pixels in [0, 1].
    scale = 1.0 if np.issubdtype(dtype, np.integer) else 1.0 / 255
    return _InputPlan(image_shape, np.dtype(dtype), scale), input_shape[0]


def _onnx_adapter(model: OnnxModel, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """`input_adapter` for an OnnxModel: batches run through its ONNX Runtime session."""
    plan, fixed_batch_size = _plan_onnx_input(model)
    input_name = model.session.get_inputs()[0].name

    def run_batch(batch: np.ndarray) -> np.ndarray:
        count = len(batch)
        if fixed_batch_size is not None and count < fixed_batch_size:
            # A model exported for a fixed batch size: pad the last batch with blank images.
            padding = np.zeros((fixed_batch_size - count, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
            batch = np.concatenate([batch, padding])
        return model.session.run(None, {input_name: _adapted(batch, plan)})[0][:count]

    return _batched(run_batch, fixed_batch_size or batch_size, str(model.path))
