"""Exporting digit models to ONNX, to run them with ONNX Runtime instead of TensorFlow.

`export_onnx` writes an `.onnx` file that takes the same uint8 (N, 28, 28) images as digitlab's
Keras models, for any N, and gives the same (N, 10) probabilities. Before the file is put in
place, ONNX Runtime and Keras run it on a sample and must agree on every label and on every
probability to within 1e-4; a file that does not is never written.

The conversion is Keras's own (`model.export(format="onnx")`, which converts a tf.function with
tf2onnx), so export needs the `export` extra: pip install "digitlab[export]". Running the file
needs only onnxruntime (`digitlab.inference.model_files.load_model("model.onnx")`).
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import numpy as np

from digitlab import __version__
from digitlab.compute.backend import filtered_stderr
from digitlab.compute.backend import keras as _started_keras
from digitlab.data.dataset import Dataset
from digitlab.errors import DigitlabError
from digitlab.inference import model_files as modelio
from digitlab.inference.model_files import ModelError, OnnxModel
from digitlab.outputs import check_new, write_file
from digitlab.shape import IMAGE_SIDE

keras = _started_keras()

__all__ = ["AGREEMENT_TOLERANCE", "ExportError", "default_onnx_path", "export_onnx"]

AGREEMENT_TOLERANCE = 1e-4
# Opset 15 runs on every ONNX Runtime since 1.10 (2021) and has every operation the zoo needs.
ONNX_OPSET = 15
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
BATCH_DIMENSION = "N"
SAMPLE_SIZE = 200
# What Keras's ONNX export needs under TensorFlow: the `export` extra.
_EXPORT_PACKAGES = ("tf2onnx", "onnx")
# TensorFlow's C++ information lines (grappler "Starting new session", devices found) that
# tf2onnx's graph optimisation prints; warnings and errors still show.
_CONVERSION_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|I\d{4} )")


class ExportError(DigitlabError):
    """A model could not be exported, or its export does not compute what the model does."""


def _generated_sample(count: int = SAMPLE_SIZE, seed: int = 0) -> np.ndarray:
    """uint8 (count, 28, 28) images: half uniform noise, half random bright strokes on black."""
    generator = np.random.default_rng(seed)
    noise = generator.integers(0, 256, size=(count // 2, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    strokes = np.zeros((count - len(noise), IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    for image in strokes:
        for _ in range(generator.integers(1, 4)):
            start, end = generator.uniform(4, IMAGE_SIDE - 5, size=(2, 2))
            for step in np.linspace(0.0, 1.0, 40):
                row, column = np.round(start + step * (end - start)).astype(int)
                image[row - 1 : row + 2, column - 1 : column + 2] = generator.integers(128, 256)
    return np.concatenate([noise, strokes])


def _sample_images(check_data: np.ndarray | Dataset | None) -> np.ndarray:
    if check_data is None:
        return _generated_sample()
    images = check_data.images if isinstance(check_data, Dataset) else np.asarray(check_data)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or images.dtype != np.uint8:
        raise ValueError(f"check_data must be uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}")
    if len(images) == 0:
        raise ValueError("check_data holds no images")
    return images


def _taking_uint8_images(model: keras.Model, source: Path) -> keras.Model:
    """`model` if it takes uint8 (N, 28, 28); else a model that reshapes and scales such images
    into what `model` takes, exactly as `digitlab.inference.model_files.input_adapter` does."""
    plan = modelio._plan_input(model, source)
    if plan.dtype == np.uint8 and plan.image_shape == (IMAGE_SIDE, IMAGE_SIDE):
        return model
    pixels = keras.Input((IMAGE_SIDE, IMAGE_SIDE), dtype="uint8", name=INPUT_NAME)
    inputs = keras.ops.reshape(keras.ops.cast(pixels, plan.dtype.name), (-1, *plan.image_shape))
    if plan.scale != 1.0:
        # A Python number, not a tensor: a tensor would become a second input of the ONNX graph.
        inputs = inputs * plan.scale
    return keras.Model(pixels, model(inputs), name=model.name)


def _check_converter_installed() -> None:
    missing = [name for name in _EXPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f"ONNX export needs {' and '.join(missing)}, which are not installed: pip install \"digitlab[export]\""
        )


def _convert(model: keras.Model, path: Path) -> None:
    """Write `model` to `path` as ONNX with Keras's exporter (tf2onnx under TensorFlow)."""
    signature = [keras.InputSpec(shape=(None, IMAGE_SIDE, IMAGE_SIDE), dtype="uint8", name=INPUT_NAME)]
    try:
        with warnings.catch_warnings(), filtered_stderr(_CONVERSION_NOISE):
            # Keras's numpy-2 patch for tf2onnx looks up np.object, which numpy 2 warns about.
            warnings.simplefilter("ignore", FutureWarning)
            model.export(str(path), format="onnx", verbose=False, input_signature=signature, opset_version=ONNX_OPSET)
    except OSError:
        raise  # writing failed (a full disk, say): the caller names the file
    except Exception as error:  # tf2onnx raises many kinds for operations it cannot convert
        raise ExportError(f"cannot export model {model.name!r} to ONNX: {modelio._first_line(error)}") from error


def _label_graph(path: Path, model: keras.Model, source: Path) -> None:
    """Name the output "probabilities" and the batch dimension "N", and record where it came from."""
    import onnx

    onnx_model = onnx.load(str(path))
    graph = onnx_model.graph
    old_output = graph.output[0].name
    for node in graph.node:
        for index, name in enumerate(node.output):
            if name == old_output:
                node.output[index] = OUTPUT_NAME
        for index, name in enumerate(node.input):
            if name == old_output:
                node.input[index] = OUTPUT_NAME
    graph.output[0].name = OUTPUT_NAME
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIMENSION
    metadata = {
        modelio.ONNX_MODEL_NAME_KEY: model.name,
        modelio.ONNX_WEIGHT_COUNT_KEY: str(model.count_params()),
        "digitlab.version": __version__,
        "digitlab.source": source.name,
    }
    onnx.helper.set_model_props(onnx_model, metadata)
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))


def _check_agreement(path: Path, model: keras.Model, images: np.ndarray) -> None:
    """Raise ExportError unless ONNX Runtime and Keras give the same labels and probabilities."""
    onnx_probabilities = modelio.predict_function_for(path)(images)
    keras_probabilities = modelio.input_adapter(model)(images)
    difference = np.abs(onnx_probabilities - keras_probabilities).max()
    disagreements = int((onnx_probabilities.argmax(axis=1) != keras_probabilities.argmax(axis=1)).sum())
    if disagreements or not difference <= AGREEMENT_TOLERANCE:
        raise ExportError(
            f"the ONNX export of {model.name!r} does not compute what the Keras model does: on {len(images)} "
            f"check images the labels differ for {disagreements} and the probabilities by up to {difference:.2g} "
            f"(allowed {AGREEMENT_TOLERANCE:g}); nothing was written"
        )


def default_onnx_path(model_path: str | Path) -> Path:
    """Where `digitlab export` writes by default: `model.onnx` in a run folder, else the model
    file's name with `.onnx` (runs/x/model.keras -> runs/x/model.onnx, cnn.h5 -> cnn.onnx)."""
    model_path = Path(model_path).expanduser()
    if model_path.is_dir():
        return model_path / modelio.ONNX_FILENAME
    return model_path.with_suffix(modelio.ONNX_SUFFIX)


def export_onnx(
    model_path: str | Path,
    output_path: str | Path,
    force: bool = False,
    check_data: np.ndarray | Dataset | None = None,
) -> Path:
    """Export the digit model at `model_path` (a `.keras` or `.h5` file or a run folder) to ONNX.

    The ONNX model's input "pixels" is uint8 (N, 28, 28) for any N, as digitlab's Keras models
    take, and its output "probabilities" float32 (N, 10); models that take floats or another
    shape get the reshaping and scaling `digitlab.inference.model_files.input_adapter` would do built in.
    Before the file is put in place, ONNX Runtime and Keras must agree on every label and on
    every probability to within 1e-4 on `check_data` (uint8 (N, 28, 28) images or a Dataset)
    or, by default, on 200 generated images; otherwise ExportError, and nothing is written.

    `output_path` must end in `.onnx`; an existing file is refused (before any work) unless
    `force`, and the file is written atomically. Returns the path written.

    >>> export_onnx("runs/20261121-120000-keras-example", "runs/20261121-120000-keras-example/model.onnx")
    """
    output_path = check_new(Path(output_path).expanduser(), force)
    if output_path.suffix.lower() != modelio.ONNX_SUFFIX:
        raise ExportError(f"{output_path}: an ONNX model's name must end in {modelio.ONNX_SUFFIX}")
    _check_converter_installed()
    images = _sample_images(check_data)
    model_path = Path(model_path).expanduser()
    model = modelio.load_model(model_path)
    if isinstance(model, OnnxModel):
        raise ModelError(model.path, "is an ONNX model already")
    exportable = _taking_uint8_images(model, model_path)

    def write(temporary: Path) -> None:
        _convert(exportable, temporary)
        _label_graph(temporary, model, model_path)
        _check_agreement(temporary, model, images)

    return write_file(output_path, write, force)
