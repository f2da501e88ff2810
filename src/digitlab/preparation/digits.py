"""An image as MNIST-style digits: `prepare` runs the four steps of `digitlab.preparation`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from digitlab.preparation.ink import to_grey_ink
from digitlab.preparation.mnist_form import already_mnist, to_mnist
from digitlab.preparation.opening import WORK_SIDE, ImageSource, open_image, plain_grey_png, source_name
from digitlab.preparation.segmenting import Box, segment
from digitlab.shape import IMAGE_SIDE


@dataclass
class Prepared:
    """An image prepared for an MNIST model.

    `digits` holds one uint8 (28, 28) MNIST-style image per digit found, left to right, and
    `boxes` their pixel boxes in the original image (after EXIF rotation); both are empty when
    the image holds no ink. `ink` is the ink map the digits were cut from (float32, 1 = ink),
    at `scale` times the original size.
    """

    source: str
    size: tuple[int, int]
    digits: list[np.ndarray]
    boxes: list[Box]
    ink: np.ndarray = field(repr=False)
    scale: float = 1.0

    @property
    def found(self) -> bool:
        return bool(self.digits)


def prepare(source: ImageSource, multi_digit: bool = True) -> Prepared:
    """An image file, its bytes or a PIL image as MNIST-style digits, left to right.

    With `multi_digit` (the default) every digit found is returned, so a photo of "2026" gives
    four; without it, the one main digit. An image without ink gives no digits (say "no digit
    found"; never guess). Raises DataError for an unreadable or oversized image.
    """
    pixels = plain_grey_png(source)
    if pixels is None:
        image = open_image(source)
        size = image.size
        factor = max(1, math.ceil(max(size) / WORK_SIDE))
        pixels = np.asarray(image.reduce(factor) if factor > 1 else image)
    else:
        size, factor = (pixels.shape[1], pixels.shape[0]), 1
    ready = already_mnist(pixels) if factor == 1 else None
    if ready is not None:
        box = Box(0, 0, IMAGE_SIDE, IMAGE_SIDE)
        return Prepared(source_name(source), size, [ready], [box], ready.astype(np.float32) / 255)
    ink = to_grey_ink(pixels)
    boxes = segment(ink, multi_digit=multi_digit)
    digits = [to_mnist(box.crop(ink)) for box in boxes]
    across, down = size[0] / pixels.shape[1], size[1] / pixels.shape[0]
    original_boxes = [box.scaled(across, down, *size) for box in boxes]
    return Prepared(source_name(source), size, digits, original_boxes, ink, 1 / factor)
