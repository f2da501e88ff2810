"""Answering a reading: the digits found in an image, or the model's answer for 28x28 pixels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from digitlab.serve.requests import ReadingRequest
from digitlab.shape import NUM_CLASSES

PredictFunction = Callable[[np.ndarray], np.ndarray]


NO_DIGIT_MESSAGE = "no digit found"


class _RecordingPredictor:
    """The predict function, keeping each call's images and probabilities for the answer."""

    def __init__(self, predict_function: PredictFunction):
        self.predict_function = predict_function
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        probabilities = np.asarray(self.predict_function(images), dtype=np.float32)
        self.calls.append((np.asarray(images), probabilities))
        return probabilities

    def probabilities_for(self, pixels: np.ndarray) -> np.ndarray:
        for images, probabilities in self.calls:
            for index, image in enumerate(images):
                if np.array_equal(image, pixels):
                    return probabilities[index]
        return self(np.asarray(pixels, dtype=np.uint8)[np.newaxis])[0]


def _digit_result(probabilities: np.ndarray, pixels: np.ndarray, box: Any = None) -> dict[str, Any]:
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(NUM_CLASSES)
    order = np.argsort(-probabilities, kind="stable")
    digit = int(order[0])
    return {
        "digit": digit,
        "confidence": round(float(probabilities[digit]), 6),
        "probabilities": [round(float(value), 6) for value in probabilities],
        "top3": [[int(index), round(float(probabilities[index]), 6)] for index in order[:3]],
        "pixels": np.asarray(pixels, dtype=np.uint8).tolist(),
        "box": _box_list(box),
    }


def _box_list(box: Any) -> list[int] | None:
    """A digit's box as [left, top, right, bottom] in the image's pixels, when known."""
    if box is None:
        return None
    if hasattr(box, "as_tuple"):
        box = box.as_tuple()
    try:
        return [int(value) for value in box]
    except (TypeError, ValueError):
        return None


def _read_pixels(predict_function: PredictFunction, pixels: np.ndarray) -> dict[str, Any]:
    if not pixels.any():
        return {"text": "", "digits": [], "found": False, "confidence": None, "message": NO_DIGIT_MESSAGE}
    probabilities = np.asarray(predict_function(pixels[np.newaxis]), dtype=np.float32)[0]
    result = _digit_result(probabilities, pixels)
    return {"text": str(result["digit"]), "digits": [result], "found": True,
            "confidence": result["confidence"], "message": None}


def _read_image(predict_function: PredictFunction, image: bytes, multi_digit: bool) -> dict[str, Any]:
    from digitlab.recognition.readings import read

    recorder = _RecordingPredictor(predict_function)
    reading = read(recorder, image, multi_digit=multi_digit)
    digits = [
        _digit_result(recorder.probabilities_for(digit.pixels), digit.pixels, digit.box)
        for digit in reading.digits
    ]
    found = bool(digits)
    return {
        "text": reading.text if found else "",
        "digits": digits,
        "found": found,
        "confidence": round(float(reading.confidence), 6) if found else None,
        "message": None if found else NO_DIGIT_MESSAGE,
    }


def answer_reading(predict_function: PredictFunction, wanted: ReadingRequest) -> dict[str, Any]:
    """Read the digits (in a worker thread); the answer's fields but `milliseconds`."""
    if wanted.pixels is not None:
        return _read_pixels(predict_function, wanted.pixels)
    assert wanted.image is not None
    return _read_image(predict_function, wanted.image, wanted.multi_digit)
