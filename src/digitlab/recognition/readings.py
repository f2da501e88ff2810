"""Reading the digits in a photo, scan or drawing with an MNIST model.

`read` prepares the image as MNIST was made (`digitlab.preparation.prepare`: the ink found,
each digit cut out, scaled into 20x20 and centred by centre of mass in 28x28) and asks the
model about each digit, left to right:

>>> from digitlab.inference.model_files import input_adapter, load_model
>>> reading = read(input_adapter(load_model("runs/…/model.keras")), "postcode.jpg")
>>> reading.text, round(reading.confidence, 3)
('2026', 0.981)

An image without ink gives an empty reading (`found` is False, `text` is ""): nothing is
guessed. `debug_dir` keeps what the model saw, one 28x28 PNG per digit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.outputs import write_file
from digitlab.preparation import ImageSource, Prepared, prepare
from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

__all__ = ["DigitReading", "PredictFunction", "Reading", "predict_digits", "read", "reading_from"]

PredictFunction = Callable[[np.ndarray], np.ndarray]
"""uint8 (N, 28, 28) images, white on black, to float (N, 10) probabilities."""

DEBUG_ZOOM = 8  # the enlarged copy of each digit is this many times 28 pixels wide


@dataclass
class DigitReading:
    """One digit read: the most probable `digit`, its probability (`confidence`), the three most
    probable digits with their probabilities (`top3`, most probable first), its `box` in the
    original image (left, top, right, bottom; right and bottom exclusive) and the 28x28 uint8
    `pixels` the model saw."""

    digit: int
    confidence: float
    top3: list[tuple[int, float]]
    box: tuple[int, int, int, int]
    pixels: np.ndarray = field(repr=False)

    def as_dict(self, include_pixels: bool = False) -> dict[str, Any]:
        """JSON-ready: plain ints, floats and lists; the pixels as 28 lists of 28 only if asked."""
        result: dict[str, Any] = {
            "digit": self.digit,
            "confidence": round(self.confidence, 6),
            "top3": [
                {"digit": digit, "probability": round(probability, 6)} for digit, probability in self.top3
            ],
            "box": {"left": self.box[0], "top": self.box[1], "right": self.box[2], "bottom": self.box[3]},
        }
        if include_pixels:
            result["pixels"] = self.pixels.tolist()
        return result


@dataclass
class Reading:
    """What an image says: its digits left to right (empty when it holds no ink)."""

    source: str
    digits: list[DigitReading]

    @property
    def text(self) -> str:
        """The digits as a string, such as "2026"; "" when none was found."""
        return "".join(str(reading.digit) for reading in self.digits)

    @property
    def confidence(self) -> float:
        """The probability that the whole text is right: the product of the digits' confidences
        (the model's probabilities, taken as independent), so one doubtful digit makes the
        reading doubtful and a longer number is never surer than its least sure digit; 0.0
        when nothing was found."""
        if not self.digits:
            return 0.0
        return float(np.prod([reading.confidence for reading in self.digits]))

    @property
    def found(self) -> bool:
        """Whether any digit was found."""
        return bool(self.digits)

    def as_dict(self, include_pixels: bool = False) -> dict[str, Any]:
        """JSON-ready: source, text, found, confidence and each digit (see `DigitReading.as_dict`)."""
        return {
            "source": self.source,
            "text": self.text,
            "found": self.found,
            "confidence": round(self.confidence, 6),
            "digits": [reading.as_dict(include_pixels) for reading in self.digits],
        }


def predict_digits(predict_function: PredictFunction, digits: np.ndarray) -> np.ndarray:
    """float64 (N, 10): the probabilities `predict_function` gives uint8 (N, 28, 28) `digits`,
    checked to be one finite row of 10 per digit."""
    return _checked_probabilities(predict_function(digits), len(digits))


def _checked_probabilities(probabilities: Any, count: int) -> np.ndarray:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (count, NUM_CLASSES):
        raise ValueError(
            f"the predict function gave shape {probabilities.shape} for {count} images; "
            f"expected ({count}, {NUM_CLASSES}) probabilities"
        )
    if not np.all(np.isfinite(probabilities)):
        raise ValueError("the predict function gave NaN or infinite probabilities")
    return probabilities


def _digit_reading(
    probabilities: np.ndarray, box: tuple[int, int, int, int], pixels: np.ndarray
) -> DigitReading:
    order = np.argsort(-probabilities, kind="stable")
    top3 = [(int(digit), float(probabilities[digit])) for digit in order[:3]]
    return DigitReading(top3[0][0], top3[0][1], top3, box, pixels)


def reading_from(
    source: str,
    digits: Sequence[np.ndarray],
    boxes: Sequence[tuple[int, int, int, int]],
    probabilities: np.ndarray,
) -> Reading:
    """The Reading of an image whose prepared `digits` (28x28 each, left to right, with their
    `boxes`) the model gave `probabilities` (one row per digit)."""
    return Reading(source, [
        _digit_reading(row, tuple(box), pixels) for row, box, pixels in zip(probabilities, boxes, digits)
    ])


def _debug_stem(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return Path(source).stem or "image"
    filename = getattr(source, "filename", "")
    return Path(filename).stem if filename else "image"


def _save_png(path: Path, image: Any) -> None:
    write_file(path, lambda temporary: image.save(temporary, format="PNG"), force=True)


def _write_debug(folder: Path, stem: str, prepared: Prepared, reading: Reading) -> list[Path]:
    """The digits the model saw (28x28 and enlarged) and the boxes drawn on the ink map."""
    from PIL import Image, ImageDraw

    written = []
    for index, digit in enumerate(reading.digits):
        image = Image.fromarray(digit.pixels, "L")
        path = folder / f"{stem}-digit-{index}.png"
        _save_png(path, image)
        large = folder / f"{stem}-digit-{index}-large.png"
        _save_png(large, image.resize((IMAGE_SIDE * DEBUG_ZOOM,) * 2, Image.Resampling.NEAREST))
        written += [path, large]
    ink = Image.fromarray(np.round(prepared.ink * 255).astype(np.uint8), "L").convert("RGB")
    draw = ImageDraw.Draw(ink)
    for digit in reading.digits:
        left, top, right, bottom = (round(value * prepared.scale) for value in digit.box)
        draw.rectangle((left, top, max(left, right - 1), max(top, bottom - 1)), outline=(255, 64, 64))
        draw.text((left + 2, top + 2), str(digit.digit), fill=(64, 255, 64))
    path = folder / f"{stem}-ink.png"
    _save_png(path, ink)
    return [*written, path]


def read(
    predict_function: PredictFunction,
    source: ImageSource,
    multi_digit: bool = True,
    debug_dir: Path | None = None,
    debug_stem: str | None = None,
) -> Reading:
    """Read the digits in an image: a path, the file's bytes or a PIL image.

    `predict_function` maps uint8 (N, 28, 28) images to (N, 10) probabilities, such as
    `digitlab.inference.model_files.input_adapter(model)`. With `multi_digit` (the default) every digit is
    read, left to right ("2026"); without it, the one main digit. An image with no ink gives
    a reading with no digits; the model is not asked. With `debug_dir`, the 28x28 digits the
    model saw are written there as `<stem>-digit-<i>.png` (and 8x larger copies,
    `<stem>-digit-<i>-large.png`), with `<stem>-ink.png`, the ink found and the boxes read,
    replacing earlier debug files of the same names; `<stem>` is the file's name without its
    suffix unless `debug_stem` gives another. Raises DataError for an unreadable image.
    """
    prepared = prepare(source, multi_digit=multi_digit)
    probabilities = np.zeros((0, NUM_CLASSES))
    if prepared.digits:
        probabilities = predict_digits(predict_function, np.stack(prepared.digits))
    boxes = [box.as_tuple() for box in prepared.boxes]
    reading = reading_from(prepared.source, prepared.digits, boxes, probabilities)
    if debug_dir is not None:
        _write_debug(Path(debug_dir), debug_stem or _debug_stem(source), prepared, reading)
    return reading
