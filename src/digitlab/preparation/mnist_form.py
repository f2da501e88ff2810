"""One digit's ink as MNIST has it: thin strokes thickened, scaled into 20x20, centred by mass in 28x28."""

from __future__ import annotations

import math

import numpy as np

from digitlab.preparation.operations import centre_of_mass, grey_dilate, ink_bounds, resized, stroke_width
from digitlab.shape import IMAGE_SIDE

DIGIT_BOX = 20  # MNIST fitted each digit's longer side into 20 pixels...


MNIST_CENTRING = 1.5  # pixels: MNIST's centres of mass are all within this of CENTRE


CENTRE = IMAGE_SIDE / 2  # ...and put its centre of mass here (pixel centres at 0, 1, ..., 27)


# Stroke widths in pixels of the 20-pixel box, measured as 2 * area / perimeter of the pixels
# at half ink or more: MNIST's median is 2.0 and only 3 of its 10,000 test digits are below 0.8.
THIN_STROKE = 0.8


TARGET_STROKE = 2.0


THICKEN_SIDE = 4 * DIGIT_BOX  # thin strokes are thickened at this resolution


EDGE_SOFTNESS = 0.2  # half the range of ink levels kept as edge in sharply resolved digits


def _thicken(ink: np.ndarray, width_in_box: float) -> np.ndarray:
    """Thin strokes made about `TARGET_STROKE` box pixels wide, at 4x the box's resolution."""
    height, width = ink.shape
    shrink = THICKEN_SIDE / max(height, width)
    work = np.clip(resized(ink, max(1, round(width * shrink)), max(1, round(height * shrink))), 0, 1)
    if work.max() > 0:
        work /= work.max()
    radius = int(round((TARGET_STROKE - width_in_box) * THICKEN_SIDE / DIGIT_BOX / 2))
    if radius < 1:
        return work
    return grey_dilate(np.pad(work, radius), radius)


def _sharpness(ink: np.ndarray) -> float:
    """0 for a digit at MNIST's own resolution (20 pixels), rising to 1 at three times that."""
    return min(max((max(ink.shape) - DIGIT_BOX) / (2 * DIGIT_BOX), 0.0), 1.0)


def _sharpen_edges(ink: np.ndarray) -> np.ndarray:
    """Steeper edges for sharply resolved digits: the ink levels from 0.5 - EDGE_SOFTNESS to
    0.5 + EDGE_SOFTNESS stretched over 0..1 (MNIST's digits were drawn from binary images, so
    their edges are only as soft as the anti-aliasing makes them, never blurred)."""
    softness = 0.5 + _sharpness(ink) * (EDGE_SOFTNESS - 0.5)
    if softness >= 0.5:
        return ink
    sharpened = np.clip((ink - (0.5 - softness)) / (2 * softness), 0.0, 1.0)
    return sharpened if sharpened.any() else ink  # all of it faint: keep it as it is


def _digit_region(ink: np.ndarray) -> tuple[float, float, float, float]:
    """The box (left, top, right, bottom) that MNIST's 20 pixels stand for, in `ink`'s pixels.

    MNIST scaled each digit's binary bounding box to 20 pixels. In a sharp image of a digit the
    binary shape is the ink at half level or more; the fainter rim around it is blur. A digit
    at about MNIST's own resolution is already anti-aliased into whole pixels, and its faint
    edge pixels are part of the shape: there the box of all its ink is taken, and in between
    the two are blended.
    """
    height, width = ink.shape
    half = ink_bounds(ink >= 0.5)
    if half is None:
        return (0.0, 0.0, float(width), float(height))
    sharpness = _sharpness(ink)
    rows, columns = half
    return (
        sharpness * columns.start,
        sharpness * rows.start,
        width + sharpness * (columns.stop - width),
        height + sharpness * (rows.stop - height),
    )


def to_mnist(ink_crop: np.ndarray) -> np.ndarray:
    """One digit's ink (float, 1 = ink) as MNIST has it: uint8 (28, 28), white on black.

    The digit's box (see `_digit_region`) is scaled with area averaging, aspect ratio kept,
    so that its longer side is 20 pixels, strokes thinner than nearly all of MNIST's are
    thickened first, and it is placed so that its centre of mass falls on the centre of the
    28x28 image, rounded to whole pixels as MNIST did. The brightest pixel becomes 255. No
    ink gives all zeros.
    """
    ink = np.clip(np.asarray(ink_crop, dtype=np.float32), 0.0, 1.0)
    result = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    bounds = ink_bounds(ink > 0)
    if bounds is None:
        return result.astype(np.uint8)
    ink = ink[bounds]
    region = _digit_region(ink)
    scale = DIGIT_BOX / max(region[2] - region[0], region[3] - region[1])
    width_in_box = stroke_width(ink >= 0.5) * scale
    if width_in_box < THIN_STROKE:
        ink = _thicken(ink, width_in_box)
        ink = ink[ink_bounds(ink > 0.02)]
        region = _digit_region(ink)
        scale = DIGIT_BOX / max(region[2] - region[0], region[3] - region[1])
    ink = _sharpen_edges(ink)
    width = max(1, min(DIGIT_BOX, round((region[2] - region[0]) * scale)))
    height = max(1, min(DIGIT_BOX, round((region[3] - region[1]) * scale)))
    digit = np.clip(resized(ink, width, height, region), 0.0, 1.0)
    peak = digit.max()
    if peak <= 0:
        return result.astype(np.uint8)
    digit /= peak
    centre_row, centre_column = centre_of_mass(digit)
    top = min(max(math.floor(CENTRE - centre_row + 0.5), 0), IMAGE_SIDE - digit.shape[0])
    left = min(max(math.floor(CENTRE - centre_column + 0.5), 0), IMAGE_SIDE - digit.shape[1])
    result[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return np.round(result * 255).astype(np.uint8)


def already_mnist(pixels: np.ndarray) -> np.ndarray | None:
    """The pixels of an image that is an MNIST digit already, else None.

    That is 28x28 grey, white ink on a mostly black background, the ink's box no longer than
    DIGIT_BOX on either side and its centre of mass within MNIST_CENTRING of CENTRE, as every
    one of MNIST's 70,000 digits is: the dataset's own images, and drawings exported the way it
    stores them. They are read as they are, as `digitlab predict` reads a dataset; preparing
    them again would only blur them.
    """
    if pixels.shape != (IMAGE_SIDE, IMAGE_SIDE):
        return None
    ink = pixels > 0
    bounds = ink_bounds(ink)
    if bounds is None or np.count_nonzero(ink) > pixels.size // 2:
        return None
    if max(bounds[0].stop - bounds[0].start, bounds[1].stop - bounds[1].start) > DIGIT_BOX:
        return None
    centre_row, centre_column = centre_of_mass(pixels)
    if max(abs(centre_row - CENTRE), abs(centre_column - CENTRE)) > MNIST_CENTRING:
        return None
    return pixels.copy()
