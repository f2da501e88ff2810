"""What every digit model shares, whatever runs it: its errors, and how digitlab's uint8
(N, 28, 28) images are fed to it.

digitlab's own models take the raw uint8 pixels and rescale them themselves. Models from
elsewhere often take float (N, 28, 28, 1) or (N, 784) input scaled to [0, 1]; an `InputPlan`
says how to reshape and rescale the images to suit each model, and `batched` turns a function
that runs the model on one batch into one that checks the images, batches them and gives
probabilities. Nothing here imports Keras or ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.data.dataset import Dataset
from digitlab.errors import DigitlabError
from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

MODEL_FILENAME = "model.keras"
ONNX_FILENAME = "model.onnx"
KERAS_SUFFIX = ".keras"
ONNX_SUFFIX = ".onnx"
LEGACY_SUFFIXES = (".h5", ".hdf5")
DEFAULT_BATCH_SIZE = 1024

# Per-image input shapes that 28x28 images can be reshaped into; None in a model's shape
# matches any size.
_FEEDABLE_SHAPES = (
    (IMAGE_SIDE, IMAGE_SIDE),
    (IMAGE_SIDE, IMAGE_SIDE, 1),
    (1, IMAGE_SIDE, IMAGE_SIDE),
    (IMAGE_SIDE * IMAGE_SIDE,),
)
_MESSAGE_LENGTH = 200


class ModelError(DigitlabError, ValueError):
    """A model file that cannot be loaded, or a model that cannot classify 28x28 digits."""

    def __init__(self, source: str | Path, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


def first_line(error: BaseException) -> str:
    """An error's message on one line, cut to a readable length."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= _MESSAGE_LENGTH else text[: _MESSAGE_LENGTH - 3] + "..."


@dataclass(frozen=True)
class InputPlan:
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


def checked_image_shape(
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


def adapted(images: np.ndarray, plan: InputPlan) -> np.ndarray:
    """uint8 (N, 28, 28) images reshaped, converted and scaled as `plan` says."""
    batch = images.reshape((-1, *plan.image_shape))
    if batch.dtype != plan.dtype:
        batch = batch.astype(plan.dtype)
    if plan.scale != 1.0:
        batch = batch * np.asarray(plan.scale, dtype=plan.dtype)
    return batch


def batched(
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

