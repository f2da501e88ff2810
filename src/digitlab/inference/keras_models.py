"""Digit models in Keras files: loading `.keras` and legacy `.h5` files safely, saving them in
Keras' own terms, and feeding a Keras model digitlab's uint8 (N, 28, 28) images.

Keras models are always loaded in Keras's safe mode: a file that holds Python code (a Lambda
layer, a custom function) is refused, never run. Sequential models saved by Keras 2.2, which
Keras 3's loader misreads, are rebuilt from their config and weights. `save_model` writes the
files digitlab makes in Keras' own terms, so that plain `keras.saving.load_model` opens them
without digitlab. Importing this module starts Keras (and TensorFlow).
"""

from __future__ import annotations

import inspect
import json
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.compute.backend import keras as _started_keras
from digitlab.data.compressed import first_bytes
from digitlab.inference.feeding import (
    DEFAULT_BATCH_SIZE,
    KERAS_SUFFIX,
    LEGACY_SUFFIXES,
    InputPlan,
    ModelError,
    adapted,
    batched,
    checked_image_shape,
    first_line,
)
from digitlab.shape import IMAGE_SIDE

keras = _started_keras()

__all__ = ["keras_adapter", "keras_native_model", "load_keras_model", "pixel_model", "plan_input", "save_model"]

_SHAPE_ONLY_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Reshape,
    keras.layers.Flatten,
    keras.layers.Permute,
)
_UNREGISTERED = re.compile(r"Could not locate (class|function) '([^']+)'")


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
            f"Keras 3 cannot read this legacy Keras 2 / tf.keras .h5 model ({first_line(error)}); "
            "open it with the tf.keras it was made with and re-save it as .keras "
            "(model.save('model.keras')), or rebuild the architecture in code and load the weights "
            f"with model.load_weights('{path.name}')"
        )
    return f"cannot be loaded as a Keras model: {first_line(error)}"


def load_keras_model(path: Path) -> keras.Model:
    """Load the `.keras` or legacy `.h5` / `.hdf5` file `path`, uncompiled and in safe mode,
    checked to take 28x28 images (in some shape `keras_adapter` can feed) and to output 10
    classes; every failure raises `ModelError` naming the file."""
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
    plan_input(model, path)
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


def _starts_with_rescaling(model: keras.Model) -> bool:
    """Whether the first layer that computes anything is a Rescaling layer."""
    for layer in model.layers:
        if isinstance(layer, _SHAPE_ONLY_LAYERS):
            continue
        if isinstance(layer, keras.Model):
            return _starts_with_rescaling(layer)
        return isinstance(layer, keras.layers.Rescaling)
    return False


def plan_input(model: keras.Model, source: str | Path) -> InputPlan:
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
    image_shape = checked_image_shape(tuple(inputs[0].shape), tuple(outputs[0].shape), source)
    dtype_name = keras.backend.standardize_dtype(inputs[0].dtype)
    if "int" in dtype_name:
        return InputPlan(image_shape, np.dtype(dtype_name), 1.0)
    # Assumption: a float model without its own Rescaling layer was trained on pixels scaled to
    # [0, 1], as Keras's MNIST examples and most notebooks do (x_train / 255).
    scale = 1.0 if _starts_with_rescaling(model) else 1.0 / 255
    return InputPlan(image_shape, np.dtype(np.float32), scale)


def keras_adapter(model: keras.Model, batch_size: int = DEFAULT_BATCH_SIZE) -> Callable[[np.ndarray], np.ndarray]:
    """`digitlab.inference.model_files.input_adapter` for a Keras model: batches of `batch_size`
    called with training=False (on CPU as fast as `model.predict` for tens of thousands of
    images, and far faster for a few)."""
    source = f"model {model.name!r}"
    plan = plan_input(model, source)

    def run_batch(batch: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(model(adapted(batch, plan), training=False))

    return batched(run_batch, batch_size, source)


def pixel_model(model: keras.Model) -> keras.Model:
    """The model as one that takes uint8 (N, 28, 28) pixels and gives probabilities, for training on.

    digitlab's own models take those already and are returned as they are. Any other is wrapped:
    reshaped, converted and scaled as `input_adapter` feeds it, with a softmax after it if its
    outputs are logits. Raises ModelError if the model cannot take 28x28 images.
    """
    plan = plan_input(model, f"model {model.name!r}")
    probe = np.zeros((2, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    probe[1, 8:20, 12:16] = 255
    scores = keras.ops.convert_to_numpy(model(adapted(probe, plan), training=False))
    gives_probabilities = bool(np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))
    if plan == InputPlan((IMAGE_SIDE, IMAGE_SIDE), np.dtype(np.uint8), 1.0) and gives_probabilities:
        return model
    inputs = keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE), dtype="uint8", name="pixels")
    x = keras.layers.Reshape(plan.image_shape)(keras.ops.cast(inputs, plan.dtype.name))
    if plan.scale != 1.0:
        x = keras.layers.Rescaling(plan.scale)(x)
    x = model(x)
    if not gives_probabilities:
        x = keras.layers.Softmax(dtype="float32")(x)
    return keras.Model(inputs, x, name=model.name)

