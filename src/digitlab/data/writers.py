"""Simulated writers: one fixed, seeded style per writer, applied to any digits.

A person's handwriting differs from MNIST's in ways that stay the same from one digit to the
next: a slant, a pen's stroke width, narrow or wide letters, and each digit's own shape (a 4 left
open, a 7 with a long stem). A `Writer` holds such a style, drawn from its seed:

  slant        a shear of -25..25 degrees
  stroke       strokes as they are, or 1 or 2 pixels thicker (a felt pen, a marker)
  aspect       the digit's width scaled by 0.65..1.3 (its height kept)
  shapes       a smooth displacement field for each digit 0..9, fixed for the writer: how this
               writer bends that digit, up to about `strength` pixels

`write(dataset)` gives the digits as that writer would have written them, made into MNIST's
form again (`digitlab.preparation.mnist_form.to_mnist`). Used to measure
how well fine-tuning learns one writer's hand (bench/personal.py) and to test it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from digitlab.data.dataset import Dataset
from digitlab.preparation.mnist_form import to_mnist
from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

SHAPE_SMOOTHNESS = 5.0  # pixels: the Gaussian sigma of each digit's displacement field
MARGIN = 8  # pixels around the 28x28 digit, so that slant and width never cut it
CANVAS = IMAGE_SIDE + 2 * MARGIN


@dataclass(frozen=True)
class Writer:
    """One simulated writer's style; `Writer.drawn(seed)` draws one."""

    seed: int
    slant: float
    stroke: int
    aspect: float
    strength: float

    @classmethod
    def drawn(cls, seed: int, strength: float = 1.2) -> Writer:
        generator = np.random.default_rng([seed, 0])
        return cls(
            seed=seed,
            slant=float(generator.uniform(-25, 25)),
            stroke=int(generator.choice([0, 0, 1])),
            aspect=float(np.exp(generator.uniform(np.log(0.65), np.log(1.3)))),
            strength=strength,
        )

    def describe(self) -> str:
        stroke = ("MNIST-like", "thick", "very thick")[self.stroke]
        return f"writer {self.seed}: slant {self.slant:+.0f}°, {stroke} strokes, width x{self.aspect:.2f}"

    def shape_field(self, digit: int) -> np.ndarray:
        """The writer's fixed displacement field for `digit`: (2, CANVAS, CANVAS) pixels, rows then columns."""
        generator = np.random.default_rng([self.seed, 1, digit])
        return _smooth_field(generator, self.strength)

    def write(self, dataset: Dataset) -> Dataset:
        """The labelled `dataset`'s digits as this writer writes them (uint8, white on black)."""
        if dataset.labels is None:
            raise ValueError(f"{dataset.name} has no labels: a writer's digit shapes depend on them")
        fields = [self.shape_field(digit) for digit in range(NUM_CLASSES)]
        written = np.empty_like(dataset.images)
        for index, (image, label) in enumerate(zip(dataset.images, dataset.labels)):
            written[index] = self._written(image.astype(np.float32), fields[label])
        return Dataset(written, dataset.labels, name=f"{dataset.name}-writer{self.seed}", origin=dataset.origin)

    def _written(self, image: np.ndarray, field: np.ndarray) -> np.ndarray:
        image = np.pad(image, MARGIN)
        if self.stroke:
            image = ndimage.grey_dilation(image, footprint=_disc(self.stroke))
        rows, columns = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float64)
        centre = (CANVAS - 1) / 2
        shear = np.tan(np.radians(self.slant))
        # Where each output pixel comes from: undo the width, then the slant.
        y, x = rows - centre, columns - centre
        x = x / self.aspect
        x = x + shear * y
        source = np.stack([y + centre, x + centre]) + field
        moved = ndimage.map_coordinates(image / 255.0, source, order=1, mode="constant", cval=0.0)
        return to_mnist(moved)


def _smooth_field(generator: np.random.Generator, size: float) -> np.ndarray:
    """A smooth random displacement field (2, CANVAS, CANVAS) whose standard deviation is `size` pixels."""
    field = np.stack([ndimage.gaussian_filter(generator.normal(size=(CANVAS, CANVAS)), SHAPE_SMOOTHNESS)
                      for _ in range(2)])
    return field * (size / (field.std() + 1e-9))


def _disc(radius: int) -> np.ndarray:
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius * radius + radius


def writers(count: int, first_seed: int = 0, strength: float = 1.2) -> list[Writer]:
    """`count` writers with seeds first_seed, first_seed + 1, ..."""
    return [Writer.drawn(seed, strength) for seed in range(first_seed, first_seed + count)]
