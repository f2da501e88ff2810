"""Digit models in `.onnx` files, run by ONNX Runtime on the CPU, without TensorFlow.

`digitlab export` and the end of training write them (`digitlab.inference.export`); a run folder's
`model.onnx` answers what its `model.keras` does, and starts in a fraction of a second where
Keras needs TensorFlow's seconds of start-up.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.data.compressed import first_bytes
from digitlab.inference.feeding import (
    KERAS_SUFFIX,
    InputPlan,
    ModelError,
    adapted,
    batched,
    checked_image_shape,
    first_line,
)
from digitlab.shape import IMAGE_SIDE

__all__ = ["ONNX_MODEL_NAME_KEY", "ONNX_WEIGHT_COUNT_KEY", "OnnxModel", "load_onnx_model", "onnx_adapter"]

# Metadata keys that `digitlab.inference.export` writes into an ONNX file.
ONNX_MODEL_NAME_KEY = "digitlab.model"
ONNX_WEIGHT_COUNT_KEY = "digitlab.weights"
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
    return f"ONNX Runtime cannot load this model: {first_line(ValueError(reason))}"


def load_onnx_model(path: Path) -> OnnxModel:
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


def _plan_onnx_input(model: OnnxModel) -> tuple[InputPlan, int | None]:
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
    image_shape = checked_image_shape(input_shape, output_shape, model.path)
    dtype = _ONNX_INPUT_TYPES.get(inputs[0].type)
    if dtype is None:
        raise ModelError(model.path, f"the model takes {inputs[0].type} input; digit images need numbers")
    # Assumption, as for Keras models without a Rescaling layer: float models take pixels in [0, 1].
    scale = 1.0 if np.issubdtype(dtype, np.integer) else 1.0 / 255
    return InputPlan(image_shape, np.dtype(dtype), scale), input_shape[0]


def onnx_adapter(model: OnnxModel, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """`input_adapter` for an OnnxModel: batches run through its ONNX Runtime session."""
    plan, fixed_batch_size = _plan_onnx_input(model)
    input_name = model.session.get_inputs()[0].name

    def run_batch(batch: np.ndarray) -> np.ndarray:
        count = len(batch)
        if fixed_batch_size is not None and count < fixed_batch_size:
            # A model exported for a fixed batch size: pad the last batch with blank images.
            padding = np.zeros((fixed_batch_size - count, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
            batch = np.concatenate([batch, padding])
        return model.session.run(None, {input_name: adapted(batch, plan)})[0][:count]

    return batched(run_batch, fixed_batch_size or batch_size, str(model.path))
