"""Simulated writers and measured styles: a writer's slant, width and stroke are what is measured,
and MNIST-like digits rewritten in a measured style measure as that style."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitlab.data.dataset import Dataset
from digitlab.data.writers import Writer, writers
from digitlab.training import writer_style


def shapes(count_per_digit: int = 6, seed: int = 0) -> Dataset:
    """Upright digit-like shapes in MNIST's form: an ellipse, a bar, a hook... one per label."""
    generator = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(10):
        for _ in range(count_per_digit):
            canvas = Image.new("L", (28, 28), 0)
            pen = ImageDraw.Draw(canvas)
            wobble = generator.integers(-1, 2, size=4)
            if label % 3 == 0:
                pen.ellipse([9 + wobble[0], 4, 19 + wobble[1], 24], outline=255, width=2)
            elif label % 3 == 1:
                pen.line([(14 + wobble[0], 4), (14 + wobble[1], 24)], fill=255, width=3)
            else:
                pen.line([(8, 5 + wobble[2]), (19, 5), (12 + wobble[3], 24)], fill=255, width=2)
            images.append(np.asarray(canvas))
            labels.append(label)
    return Dataset(np.stack(images), np.array(labels), name="shapes")


def test_a_writer_is_the_same_every_time_and_writes_mnist_form():
    digits = shapes()
    first, again = Writer.drawn(3).write(digits), Writer.drawn(3).write(digits)
    assert np.array_equal(first.images, again.images)
    assert first.images.dtype == np.uint8 and first.images.shape == digits.images.shape
    assert np.array_equal(first.labels, digits.labels)
    assert (first.images.max(axis=(1, 2)) == 255).all()
    rows, columns = np.nonzero(first.images[0])
    assert rows.min() >= 3 and rows.max() <= 24 and columns.min() >= 3 and columns.max() <= 24
    assert len({writer.describe() for writer in writers(5)}) == 5


@pytest.mark.parametrize("slant", [-20.0, 20.0])
def test_a_writers_slant_is_what_is_measured(slant):
    digits = shapes()
    upright = Writer(seed=1, slant=0.0, stroke=0, aspect=1.0, strength=0.0)
    leaning = dataclasses.replace(upright, slant=slant)
    change = (np.nanmedian(writer_style.measure(leaning.write(digits)).slant)
              - np.nanmedian(writer_style.measure(upright.write(digits)).slant))
    assert np.sign(change) == -np.sign(slant)  # leaning right: the top is further right than the bottom
    assert abs(change) > 0.2


def test_rewritten_digits_measure_as_the_style_asked_for():
    digits = shapes(count_per_digit=10)
    source = writer_style.measure(digits)
    writer = Writer(seed=2, slant=18.0, stroke=1, aspect=1.25, strength=0.0)
    theirs = writer.write(shapes(count_per_digit=10, seed=5))
    target = writer_style.measure(theirs)
    rewritten = writer_style.restyled(digits, source, target, count=20, seed=0)
    measured = writer_style.measure(rewritten)
    assert len(rewritten) == 200 and sorted(set(rewritten.labels.tolist())) == list(range(10))
    assert np.allclose(measured.slant, target.slant, atol=0.12)
    assert np.allclose(measured.aspect, target.aspect, rtol=0.25)  # thickening widens a bar
    assert abs(np.median(measured.stroke) - np.median(target.stroke)) < abs(
        np.median(source.stroke) - np.median(target.stroke)) + 0.3


def test_digits_the_person_has_not_given_are_left_out():
    digits = shapes()
    some = digits.subset(np.flatnonzero(digits.labels < 4))
    rewritten = writer_style.restyled(digits, writer_style.measure(digits), writer_style.measure(some), count=5,
                                      seed=0, theirs=some)
    assert sorted(set(rewritten.labels.tolist())) == [0, 1, 2, 3]
