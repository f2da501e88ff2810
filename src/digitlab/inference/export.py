"""Exporting digit models to run elsewhere: ONNX, TensorFlow Lite, a TensorFlow SavedModel, Keras .h5.

`export_model` writes one of:

- onnx: an `.onnx` file for ONNX Runtime (`export_onnx`; converting needs tf2onnx and onnx,
  running it only onnxruntime, and digitlab loads it as any model; every run folder gets one,
  `model.onnx`, at the end of training: `save_run_model`),
- tflite: a `.tflite` file for TensorFlow Lite on phones and small boards,
- savedmodel: a SavedModel folder for TensorFlow Serving, whose `serve` function gives the answers,
- h5: a Keras `.h5` file in the legacy format, for code that still loads those.

The first three take the same uint8 (N, 28, 28) images as digitlab's Keras models, for any N, and
give the same (N, 10) outputs; the .h5 file holds the model as it is, in Keras' own layers. Before
an export is put in place, the runtime that will run it (ONNX Runtime, the TensorFlow Lite
interpreter, TensorFlow, Keras) and Keras run it on a sample and must agree on every label and on
every probability to within 1e-4; an export that does not is never written.

The conversions are Keras's own (`model.export`, which for ONNX converts a tf.function with
tf2onnx) and TensorFlow Lite's converter, from that SavedModel.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab import __version__
from digitlab.compute.backend import filtered_stderr
from digitlab.compute.backend import keras as _started_keras
from digitlab.data.dataset import Dataset
from digitlab.errors import DigitlabError
from digitlab.inference import keras_models
from digitlab.inference import model_files as modelio
from digitlab.inference.feeding import batched, first_line
from digitlab.inference.model_files import ModelError, OnnxModel
from digitlab.inference.onnx_models import ONNX_MODEL_NAME_KEY, ONNX_WEIGHT_COUNT_KEY
from digitlab.outputs import check_new, write_file, write_folder
from digitlab.shape import IMAGE_SIDE

keras = _started_keras()

__all__ = [
    "AGREEMENT_TOLERANCE",
    "EXPORT_FORMATS",
    "ExportError",
    "default_export_path",
    "default_onnx_path",
    "export_model",
    "export_onnx",
    "save_run_model",
    "write_onnx_copy",
]

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
# tf2onnx's graph optimisation and the TensorFlow Lite converter and interpreter print;
# warnings and errors still show.
_CONVERSION_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog|I\d{4} |INFO: Created TensorFlow Lite)"
)


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
    plan = keras_models.plan_input(model, source)
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
            f"ONNX export needs {' and '.join(missing)}, which are not installed: pip install {' '.join(missing)}"
        )


def _signature() -> list:
    return [keras.InputSpec(shape=(None, IMAGE_SIDE, IMAGE_SIDE), dtype="uint8", name=INPUT_NAME)]


def _convert(model: keras.Model, path: Path) -> None:
    """Write `model` to `path` as ONNX with Keras's exporter (tf2onnx under TensorFlow)."""
    with warnings.catch_warnings():
        # Keras's numpy-2 patch for tf2onnx looks up np.object, which numpy 2 warns about.
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(path), format="onnx", verbose=False, input_signature=_signature(), opset_version=ONNX_OPSET)


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
        ONNX_MODEL_NAME_KEY: model.name,
        ONNX_WEIGHT_COUNT_KEY: str(model.count_params()),
        "digitlab.version": __version__,
        "digitlab.source": source.name,
    }
    onnx.helper.set_model_props(onnx_model, metadata)
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))


def _write_onnx(model: keras.Model, source: Path, path: Path) -> None:
    _convert(_taking_uint8_images(model, source), path)
    _label_graph(path, model, source)


def _write_saved_model(model: keras.Model, source: Path, folder: Path) -> None:
    """A SavedModel in `folder` whose `serve` function takes uint8 (N, 28, 28) "pixels"."""
    _taking_uint8_images(model, source).export(
        str(folder), format="tf_saved_model", verbose=False, input_signature=_signature()
    )


def _write_tflite(model: keras.Model, source: Path, path: Path) -> None:
    """A TensorFlow Lite file converted from the SavedModel of `_write_saved_model`: converting
    the model's tf.function directly loses Keras 3's weights."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="digitlab-export-") as folder:
        _write_saved_model(model, source, Path(folder))
        path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(folder).convert())


def _write_h5(model: keras.Model, source: Path, path: Path) -> None:
    # Keras logs, through absl, that .h5 is a legacy format: here it is what was asked for.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        keras_models.save_model(model, path)
    finally:
        absl_logger.setLevel(level)


def _tflite_predictor(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 (N, 28, 28) images to probabilities, run by TensorFlow Lite's interpreter."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its notice that the LiteRT package replaces it
        interpreter = tf.lite.Interpreter(model_path=str(path))
    run = interpreter.get_signature_runner()  # the one signature, which resizes its input to each batch

    def run_batch(batch: np.ndarray) -> np.ndarray:
        (scores,) = run(**{INPUT_NAME: batch}).values()
        return scores

    return batched(run_batch, modelio.DEFAULT_BATCH_SIZE, str(path))


def _saved_model_predictor(folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 (N, 28, 28) images to probabilities, run by the SavedModel's `serve` function."""
    import tensorflow as tf

    saved = tf.saved_model.load(str(folder))  # kept: `serve` alone would lose the variables it reads
    return batched(lambda batch: saved.serve(batch).numpy(), modelio.DEFAULT_BATCH_SIZE, str(folder))


@dataclass(frozen=True)
class _Format:
    title: str
    suffixes: tuple[str, ...]  # what the output's name must end in; none for a folder
    run_folder_name: str  # its name in a run folder, and beside a model file for a folder
    runtime: str  # what runs the export, checked against Keras
    write: Callable[[keras.Model, Path, Path], None]  # (model, its source, the destination)
    predictor: Callable[[Path], Callable[[np.ndarray], np.ndarray]]


_FORMATS = {
    "onnx": _Format("ONNX", (modelio.ONNX_SUFFIX,), modelio.ONNX_FILENAME, "ONNX Runtime", _write_onnx,
                    modelio.predict_function_for),
    "tflite": _Format("TensorFlow Lite", (".tflite",), "model.tflite", "TensorFlow Lite", _write_tflite,
                      _tflite_predictor),
    "savedmodel": _Format("SavedModel", (), "saved_model", "TensorFlow", _write_saved_model,
                          _saved_model_predictor),
    "h5": _Format("Keras .h5", modelio.LEGACY_SUFFIXES, "model.h5", "Keras reading the .h5 back", _write_h5,
                  modelio.predict_function_for),
}
# Each format, and what runs it.
EXPORT_FORMATS = {name: form.runtime for name, form in _FORMATS.items()}


def _format(export_format: str) -> _Format:
    form = _FORMATS.get(export_format.lower())
    if form is None:
        raise ExportError(f"unknown export format {export_format!r}; the formats are {', '.join(EXPORT_FORMATS)}")
    return form


def _check_agreement(
    exported: Callable[[np.ndarray], np.ndarray], model: keras.Model, images: np.ndarray, title: str
) -> None:
    """Raise ExportError unless the export (`exported`: images to probabilities) and Keras give
    the same labels and probabilities."""
    exported_probabilities = exported(images)
    keras_probabilities = modelio.input_adapter(model)(images)
    difference = np.abs(exported_probabilities - keras_probabilities).max()
    disagreements = int((exported_probabilities.argmax(axis=1) != keras_probabilities.argmax(axis=1)).sum())
    if disagreements or not difference <= AGREEMENT_TOLERANCE:
        raise ExportError(
            f"the {title} export of {model.name!r} does not compute what the Keras model does: on {len(images)} "
            f"check images the labels differ for {disagreements} and the probabilities by up to {difference:.2g} "
            f"(allowed {AGREEMENT_TOLERANCE:g}); nothing was written"
        )


def default_export_path(model_path: str | Path, export_format: str = "onnx") -> Path:
    """Where `digitlab export` writes by default: in a run folder `model.onnx`, `model.tflite`,
    `saved_model/` or `model.h5`; beside a model file, the file's name with the format's suffix
    (runs/x/model.keras -> runs/x/model.onnx, cnn.h5 -> cnn.tflite), or `saved_model/`."""
    form = _format(export_format)
    model_path = Path(model_path).expanduser()
    if model_path.is_dir():
        return model_path / form.run_folder_name
    if not form.suffixes:
        return model_path.parent / form.run_folder_name
    return model_path.with_suffix(form.suffixes[0])


def default_onnx_path(model_path: str | Path) -> Path:
    """`default_export_path` for ONNX: `model.onnx` in a run folder, else the model file's name with `.onnx`."""
    return default_export_path(model_path, "onnx")


def export_model(
    model_path: str | Path,
    output_path: str | Path,
    export_format: str = "onnx",
    force: bool = False,
    check_data: np.ndarray | Dataset | None = None,
) -> Path:
    """Export the digit model at `model_path` (a `.keras` or `.h5` file or a run folder) as
    `export_format`: "onnx", "tflite", "savedmodel" or "h5" (see the module's description).

    ONNX, TensorFlow Lite and SavedModel exports take uint8 (N, 28, 28) "pixels" for any N, as
    digitlab's Keras models do; models that take floats or another shape get the reshaping and
    scaling `digitlab.inference.model_files.input_adapter` would do built in. Before the export is
    put in place, it and Keras must agree on every label and on every probability to within 1e-4
    on `check_data` (uint8 (N, 28, 28) images or a Dataset) or, by default, on 200 generated
    images; otherwise ExportError, and nothing is written.

    `output_path` must end in the format's suffix (`.onnx`, `.tflite`, `.h5`); a SavedModel is a
    folder. Anything already there is refused (before any work) unless `force`, and the export is
    written atomically. Returns the path written.

    >>> export_model("runs/20261121-120000-fast", "runs/20261121-120000-fast/model.tflite", "tflite")
    """
    form = _format(export_format)
    output_path = check_new(Path(output_path).expanduser(), force)
    if form.suffixes and output_path.suffix.lower() not in form.suffixes:
        endings = " or ".join(form.suffixes)
        raise ExportError(f"{output_path}: the name of the {form.title} export must end in {endings}")
    if form is _FORMATS["onnx"]:
        _check_converter_installed()
    images = _sample_images(check_data)
    model_path = Path(model_path).expanduser()
    model = modelio.load_model(model_path)
    if isinstance(model, OnnxModel):
        raise ModelError(model.path, "is an ONNX model already")
    return _exported(model, model_path, output_path, form, images, force)


def _exported(model: keras.Model, source: Path, output_path: Path, form: _Format, images: np.ndarray,
              force: bool) -> Path:
    """Write `model` (loaded from `source`) to `output_path` as `form`, atomically, once its
    runtime agrees with Keras on `images`."""

    def write(destination: Path) -> None:
        try:
            with filtered_stderr(_CONVERSION_NOISE):
                form.write(model, source, destination)
        except (OSError, ExportError):
            raise  # writing failed (a full disk, say): the caller names the file
        except Exception as error:  # the converters raise many kinds for operations they cannot convert
            raise ExportError(f"cannot export model {model.name!r} to {form.title}: {first_line(error)}"
                              ) from error
        with filtered_stderr(_CONVERSION_NOISE):
            _check_agreement(form.predictor(destination), model, images, form.title)

    if form.suffixes:
        return write_file(output_path, write, force)
    return write_folder(output_path, write, force)


def save_run_model(model: keras.Model, folder: str | Path, check_data: np.ndarray | Dataset | None = None,
                   say: Callable[[str], None] | None = None) -> None:
    """Write a run folder's `model.keras` (Keras' own terms, see `keras_models.save_model`) and
    then its ONNX copy `model.onnx` (`write_onnx_copy`), each atomically.

    When the ONNX copy cannot be made, `say` (default: standard error) is told why in one line
    and the run keeps only `model.keras`, which every command still reads, with TensorFlow.
    """
    folder = Path(folder)
    native = keras_models.keras_native_model(model)  # made once, for both files
    write_file(folder / modelio.MODEL_FILENAME, lambda temporary: native.save(temporary), force=True)
    try:
        _check_converter_installed()
        _write_native_onnx_copy(native, folder, check_data)
    except ExportError as error:
        message = f"note: no {modelio.ONNX_FILENAME} in {folder}: {error}; predict and serve will read " \
                  f"{modelio.MODEL_FILENAME}, with TensorFlow"
        (say or (lambda line: print(line, file=sys.stderr, flush=True)))(message)


def write_onnx_copy(model: keras.Model, folder: str | Path, check_data: np.ndarray | Dataset | None = None) -> Path:
    """Write the run folder's `model.onnx`: the ONNX copy of `model`, the Keras model just saved
    as the folder's `model.keras`, which `predict`, `evaluate`, `submit` and `serve` run with ONNX
    Runtime, without starting TensorFlow.

    It is checked against Keras as `export_model` checks (on `check_data`, or 200 generated
    images) and replaces an older copy. Raises ExportError when the converter is not installed
    or the model cannot be converted; the run stays usable through `model.keras`.
    """
    _check_converter_installed()
    # Keras' own layers, as model.keras holds them
    return _write_native_onnx_copy(keras_models.keras_native_model(model), Path(folder), check_data)


def _write_native_onnx_copy(native: keras.Model, folder: Path, check_data: np.ndarray | Dataset | None) -> Path:
    return _exported(native, folder / modelio.MODEL_FILENAME, folder / modelio.ONNX_FILENAME, _FORMATS["onnx"],
                     _sample_images(check_data), force=True)


def export_onnx(
    model_path: str | Path,
    output_path: str | Path,
    force: bool = False,
    check_data: np.ndarray | Dataset | None = None,
) -> Path:
    """Export the digit model at `model_path` (a `.keras` or `.h5` file or a run folder) to ONNX:
    `export_model` with "onnx".

    The ONNX model's input "pixels" is uint8 (N, 28, 28) for any N and its output "probabilities"
    float32 (N, 10). `output_path` must end in `.onnx`.

    >>> export_onnx("runs/20261121-120000-keras-example", "runs/20261121-120000-keras-example/model.onnx")
    """
    return export_model(model_path, output_path, "onnx", force, check_data)
