"""Test-time augmentation: average a model's probabilities over slightly moved copies of each image.

Each image is predicted as it is and as a few variants of it: rotated by a few degrees about
the image centre (bilinear, zero fill) and then shifted by whole pixels (zero fill). The
probabilities of all variants are averaged. By default the variants are the image and the image
moved one pixel up, down, left and right (5 predictions per image); rotations are optional. The
transformations are vectorised NumPy and cost far less than running the model on the variants.

>>> from digitlab.inference.tta import tta_predict_function
>>> predict = tta_predict_function(classifier.predict_function)
>>> predict(images)                    # float32 (N, 10), the mean over the variants
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from digitlab.data.dataset import Dataset
from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

__all__ = [
    "DEFAULT_ROTATIONS",
    "DEFAULT_SHIFTS",
    "TestTimeAugmentation",
    "rotate_images",
    "shift_images",
    "tta_predict_function",
]

PredictFunction = Callable[[np.ndarray], np.ndarray]

# Each shift is (rows down, columns right) in whole pixels; rotations are degrees,
# counter-clockwise as the image is shown. Chosen on MNIST's validation split: one-pixel shifts
# helped all three quick models tried (+0.07 to +0.40 points); rotations of 5 or 8 degrees
# helped two of them but cost the plain Keras-example convnet 0.08 points, so none by default.
DEFAULT_SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
DEFAULT_ROTATIONS: tuple[float, ...] = (0.0,)
_ROTATION_CHUNK = 4096


def shift_images(images: np.ndarray, down: int, right: int) -> np.ndarray:
    """uint8 (N, H, W) images moved `down` rows and `right` columns (negative: up, left).

    Pixels moved out of the image are lost and the uncovered ones are 0 (black).
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, height, width), got {images.shape}")
    if down == 0 and right == 0:
        return images.copy()
    height, width = images.shape[1:]
    shifted = np.zeros_like(images)
    if abs(down) >= height or abs(right) >= width:
        return shifted
    # Destination and source ranges along one axis for a move of `offset`.
    def ranges(offset: int, size: int) -> tuple[slice, slice]:
        if offset >= 0:
            return slice(offset, size), slice(0, size - offset)
        return slice(0, size + offset), slice(-offset, size)

    row_target, row_source = ranges(down, height)
    column_target, column_source = ranges(right, width)
    shifted[:, row_target, column_target] = images[:, row_source, column_source]
    return shifted


@functools.lru_cache(maxsize=32)
def _rotation_plan(degrees: float, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel samples its input: (4, H*W) flat indices and (4, H*W) weights.

    The four entries are the bilinear neighbours of the source point; a neighbour outside the
    image has weight 0 (zero fill) and index 0.
    """
    angle = math.radians(degrees)
    cosine, sine = math.cos(angle), math.sin(angle)
    centre_row, centre_column = (height - 1) / 2, (width - 1) / 2
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float64)
    row_offset, column_offset = rows - centre_row, columns - centre_column
    # The inverse of a counter-clockwise turn on screen (rows grow downwards), as Pillow's rotate.
    source_column = cosine * column_offset - sine * row_offset + centre_column
    source_row = sine * column_offset + cosine * row_offset + centre_row
    top, left = np.floor(source_row), np.floor(source_column)
    down_fraction, right_fraction = source_row - top, source_column - left
    indices, weights = [], []
    for row_step, column_step in ((0, 0), (0, 1), (1, 0), (1, 1)):
        row, column = top + row_step, left + column_step
        weight = ((down_fraction if row_step else 1 - down_fraction)
                  * (right_fraction if column_step else 1 - right_fraction))
        inside = (row >= 0) & (row < height) & (column >= 0) & (column < width)
        indices.append(np.where(inside, row * width + column, 0).astype(np.intp).ravel())
        weights.append(np.where(inside, weight, 0.0).astype(np.float32).ravel())
    return np.stack(indices), np.stack(weights)


def rotate_images(images: np.ndarray, degrees: float) -> np.ndarray:
    """uint8 (N, H, W) images turned `degrees` counter-clockwise about their centre.

    Bilinear interpolation, rounded to whole pixel values; what comes from outside the image
    is 0 (black). The same turn as Pillow's `Image.rotate(degrees, Image.BILINEAR)` with a
    black fill, up to rounding and the outermost pixel ring (Pillow repeats the edge there).
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, height, width), got {images.shape}")
    if degrees % 360 == 0:
        return images.copy()
    count, height, width = images.shape
    indices, weights = _rotation_plan(float(degrees), height, width)
    flat = images.reshape(count, height * width)
    rotated = np.empty((count, height * width), dtype=images.dtype)
    # In chunks, so that the (chunk, 4, H*W) neighbours stay small for any number of images.
    for start in range(0, count, _ROTATION_CHUNK):
        neighbours = np.take(flat[start : start + _ROTATION_CHUNK], indices, axis=1)
        values = np.einsum("ncp,cp->np", neighbours, weights, dtype=np.float32)
        rotated[start : start + _ROTATION_CHUNK] = np.clip(np.rint(values), 0, 255)
    return rotated.reshape(images.shape)


class TestTimeAugmentation:
    """A predict function that averages `predict_function`'s probabilities over image variants.

    The variants are every rotation in `rotations` (degrees) followed by every shift in
    `shifts` ((rows down, columns right), whole pixels); (0, 0) with 0 degrees is the image
    itself. Calling it with uint8 (N, 28, 28) images (or a Dataset) gives float32 (N, 10),
    as `predict_function` does; `predict_function` is called once per variant.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        predict_function: PredictFunction,
        shifts: Sequence[tuple[int, int]] = DEFAULT_SHIFTS,
        rotations: Sequence[float] = DEFAULT_ROTATIONS,
    ) -> None:
        if not callable(predict_function):
            raise TypeError(f"predict_function must be callable, got {type(predict_function).__name__}")
        shifts = tuple((int(down), int(right)) for down, right in shifts)
        rotations = tuple(float(degrees) for degrees in rotations)
        if not shifts or not rotations:
            raise ValueError("test-time augmentation needs at least one shift and one rotation, e.g. (0, 0) and 0")
        for down, right in shifts:
            if max(abs(down), abs(right)) >= IMAGE_SIDE // 2:
                raise ValueError(f"shift {(down, right)} would move the digit out of the image")
        for degrees in rotations:
            if not -180 <= degrees <= 180:
                raise ValueError(f"rotation {degrees} must be in degrees between -180 and 180")
        self.predict_function = predict_function
        self.shifts = shifts
        self.rotations = rotations

    @property
    def variants(self) -> list[tuple[float, tuple[int, int]]]:
        """Every (rotation, shift) pair the images are predicted in."""
        return list(itertools.product(self.rotations, self.shifts))

    def __repr__(self) -> str:
        return f"TestTimeAugmentation(shifts={self.shifts}, rotations={self.rotations})"

    def __call__(self, images: np.ndarray | Dataset) -> np.ndarray:
        if isinstance(images, Dataset):
            images = images.images
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise ValueError(f"images must have shape (N, 28, 28), got {images.shape}")
        if len(images) == 0:
            return np.zeros((0, NUM_CLASSES), dtype=np.float32)
        total = np.zeros((len(images), NUM_CLASSES), dtype=np.float64)
        for degrees in self.rotations:
            rotated = rotate_images(images, degrees) if degrees else images
            for down, right in self.shifts:
                variant = shift_images(rotated, down, right) if (down or right) else rotated
                total += np.asarray(self.predict_function(variant), dtype=np.float64)
        return (total / (len(self.rotations) * len(self.shifts))).astype(np.float32)


def tta_predict_function(
    predict_function: PredictFunction,
    shifts: Sequence[tuple[int, int]] = DEFAULT_SHIFTS,
    rotations: Sequence[float] = DEFAULT_ROTATIONS,
) -> TestTimeAugmentation:
    """`predict_function` with test-time augmentation: see `TestTimeAugmentation`.

    `predict_function` maps uint8 (N, 28, 28) images to (N, 10) probabilities, as
    `digitlab.inference.model_files.input_adapter(model)` or `Classifier.predict_function` does; so does the
    function returned. Each image is predicted in len(shifts) * len(rotations) variants.
    """
    return TestTimeAugmentation(predict_function, shifts, rotations)
