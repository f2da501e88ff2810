"""A person's writing style, measured from their digits, and MNIST's digits rewritten in it.

Twenty examples of each digit are few to learn a hand from. But much of what sets a hand apart
is the same for all its digits of a kind: how far they lean, how wide they are, how thick the pen
is. Those are measured on each digit (from its ink's moments and its strokes' width) and their
median taken per digit 0..9; MNIST's training digits are then sheared, widened or narrowed and
thickened to match, per digit, and made into MNIST's form again. Fine-tuning learns from
thousands of such digits besides the person's own few.

  slant      the ink's horizontal shift per pixel down: its second moments' mu11 / mu02
  aspect     the ink's spread across over its spread down, once the slant is taken out
  stroke     the strokes' width in pixels (2 * area / perimeter of the ink at half strength)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitlab.data.dataset import Dataset
from digitlab.preparation.mnist_form import DIGIT_BOX, to_mnist
from digitlab.preparation.operations import stroke_width
from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

MARGIN = 10  # pixels around a digit being reshaped, so that shearing and widening never cut it
STYLE_SAMPLE = 300  # MNIST digits of each kind measured for MNIST's own style
# Per image, how far the rewritten style may wander around the person's median: no one writes
# a digit twice the same, and a median from 15 examples is itself uncertain.
SLANT_SPREAD = 0.08
ASPECT_SPREAD = 0.06
STROKE_SPREAD = 0.25  # pixels
UPSCALE = 2
MIN_STROKE = 1.2  # pixels: strokes are never thinned below this
FLOW_WINDOW = 9  # pixels: the averaging window of the mean-shape flow


@dataclass(frozen=True)
class Style:
    """Median slant, aspect and stroke width of each digit 0..9 (NaN where there are no examples)."""

    slant: np.ndarray
    aspect: np.ndarray
    stroke: np.ndarray

    def describe(self) -> str:
        return (f"slant {np.nanmedian(self.slant):+.2f}, aspect {np.nanmedian(self.aspect):.2f}, "
                f"strokes {np.nanmedian(self.stroke):.1f} px")


def measures(image: np.ndarray) -> tuple[float, float, float]:
    """The slant, aspect and stroke width of one uint8 (28, 28) digit."""
    weights = image.astype(np.float64)
    total = weights.sum()
    if total <= 0:
        return 0.0, 1.0, 0.0
    rows, columns = np.indices(image.shape, dtype=np.float64)
    row_mean, column_mean = (weights * rows).sum() / total, (weights * columns).sum() / total
    down, across = rows - row_mean, columns - column_mean
    mu02 = (weights * down * down).sum() / total
    mu11 = (weights * down * across).sum() / total
    mu20 = (weights * across * across).sum() / total
    slant = mu11 / mu02 if mu02 > 0 else 0.0
    upright_spread = max(mu20 - slant * mu11, 1e-6)
    aspect = float(np.sqrt(upright_spread / mu02)) if mu02 > 0 else 1.0
    return float(slant), aspect, stroke_width(image >= 128)


def measure(dataset: Dataset) -> Style:
    """The median style of each digit in a labelled dataset."""
    values = np.array([measures(image) for image in dataset.images]).reshape(-1, 3)
    medians = np.full((3, NUM_CLASSES), np.nan)
    for digit in range(NUM_CLASSES):
        mine = dataset.labels == digit
        if mine.any():
            medians[:, digit] = np.median(values[mine], axis=0)
    return Style(*medians)


def sample_per_digit(dataset: Dataset, count: int, seed: int) -> Dataset:
    """Up to `count` images of each digit, drawn with a seed."""
    generator = np.random.default_rng([seed, 11])
    chosen = [generator.choice(np.flatnonzero(dataset.labels == digit),
                               size=min(count, int((dataset.labels == digit).sum())), replace=False)
              for digit in range(NUM_CLASSES) if (dataset.labels == digit).any()]
    return dataset.subset(np.sort(np.concatenate(chosen)))


def rewrite(image: np.ndarray, shear: float, widen: float, stroke: float) -> np.ndarray:
    """One uint8 digit sheared by `shear` (pixels across per pixel down), its width times `widen`
    and its strokes made about `stroke` pixels wide, then made into MNIST's form again.

    The work is done at twice the resolution, so that strokes can change by half a pixel."""
    import cv2

    canvas = cv2.resize(np.pad(image, MARGIN).astype(np.float32) / 255.0, None, fx=UPSCALE, fy=UPSCALE,
                        interpolation=cv2.INTER_LINEAR)
    weights = canvas.sum()
    if weights <= 0:
        return image
    rows, columns = np.indices(canvas.shape)
    row_mean = (canvas * rows).sum() / weights
    column_mean = (canvas * columns).sum() / weights
    # across' = column_mean + widen * ((across - column_mean) + shear * (down - row_mean))
    matrix = np.array([[widen, widen * shear, column_mean - widen * (column_mean + shear * row_mean)],
                       [0.0, 1.0, 0.0]], dtype=np.float64)
    moved = cv2.warpAffine(canvas, matrix, canvas.shape[::-1], flags=cv2.INTER_LINEAR, borderValue=0.0)
    ink_rows, ink_columns = np.nonzero(moved > 0.1)
    if not len(ink_rows):
        return image
    # to_mnist will fit the longer side into 20 pixels: the strokes' width then, and the change wanted.
    final_scale = DIGIT_BOX / max(np.ptp(ink_rows) + 1, np.ptp(ink_columns) + 1)
    width_now = stroke_width(image >= 128) * UPSCALE * final_scale
    radius = int(round((stroke - width_now) / (2 * final_scale)))
    if radius > 0:
        moved = cv2.dilate(moved, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    elif radius < 0 and width_now + 2 * radius * final_scale >= MIN_STROKE:
        moved = cv2.erode(moved, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (1 - 2 * radius, 1 - 2 * radius)))
    return to_mnist(moved)


def mean_shape_flow(rewritten: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """Where each pixel of the person's average digit lies in the rewritten digits' average:
    a dense flow (28, 28, 2) of (across, down) offsets, from OpenCV's Farneback method."""
    import cv2

    def average(images: np.ndarray) -> np.ndarray:
        mean = images.astype(np.float32).mean(axis=0)
        return np.round(mean * (255.0 / max(float(mean.max()), 1e-6))).astype(np.uint8)

    return cv2.calcOpticalFlowFarneback(average(theirs), average(rewritten), None, pyr_scale=0.5, levels=2,
                                        winsize=FLOW_WINDOW, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)


def warped(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    import cv2

    columns, rows = np.meshgrid(np.arange(IMAGE_SIDE, dtype=np.float32), np.arange(IMAGE_SIDE, dtype=np.float32))
    return cv2.remap(image, columns + flow[..., 0], rows + flow[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def restyled(digits: Dataset, source: Style, target: Style, count: int, seed: int,
             theirs: Dataset | None = None) -> Dataset:
    """`count` of each digit of `digits` (MNIST's), rewritten from style `source` into `target`.

    With `theirs` (the person's digits), each kind is then also bent the way the person's
    average of it differs from the rewritten digits' average. Digits the target has no examples
    of are left out."""
    generator = np.random.default_rng([seed, 13])
    images, labels = [], []
    for digit in range(NUM_CLASSES):
        if np.isnan(target.slant[digit]):
            continue
        pool = np.flatnonzero(digits.labels == digit)
        for index in generator.choice(pool, size=count, replace=len(pool) < count):
            widen = target.aspect[digit] / source.aspect[digit] * np.exp(generator.normal(0, ASPECT_SPREAD))
            # Widening multiplies the slant too: shear so that widened, it is the target's.
            shear = (target.slant[digit] + generator.normal(0, SLANT_SPREAD)) / widen - source.slant[digit]
            stroke = target.stroke[digit] + generator.normal(0, STROKE_SPREAD)
            images.append(rewrite(digits.images[index], float(shear), float(widen), float(stroke)))
            labels.append(digit)
        if theirs is not None:
            flow = mean_shape_flow(np.array(images[-count:]), theirs.images[theirs.labels == digit])
            images[-count:] = [warped(image, flow) for image in images[-count:]]
    shape = (len(images), IMAGE_SIDE, IMAGE_SIDE)
    return Dataset(np.array(images, dtype=np.uint8).reshape(shape), np.array(labels, dtype=np.int64),
                   name="mnist-in-your-style")
