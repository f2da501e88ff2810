"""How well a model recognises labelled digits: accuracy, loss, calibration, confusion, per digit.

Everything is computed with NumPy from the model's probabilities, so the figures do not depend
on Keras metrics and can be checked by hand.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from digitlab.data.dataset import Dataset
from digitlab.errors import DigitlabError
from digitlab.evaluation.calibration import expected_calibration_error
from digitlab.shape import NUM_CLASSES

# Keras's categorical cross-entropy clips probabilities to [EPSILON, 1 - EPSILON] the same way.
EPSILON = 1e-7
# How far a row of probabilities may stray from summing to 1 (float32 softmax rounding).
SUM_TOLERANCE = 1e-3
MOST_MISTAKES_SHOWN = 36  # the mistakes a report and plot_mistakes draw

PredictFunction = Callable[[np.ndarray], Any]


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, classes: int = NUM_CLASSES
) -> np.ndarray:
    """Counts of (true, predicted) pairs: rows are true digits, columns predicted ones."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(
            f"labels {labels.shape} and predictions {predictions.shape} must be equal 1-D shapes"
        )
    for name, values in (("labels", labels), ("predictions", predictions)):
        if len(values) and (values.min() < 0 or values.max() >= classes):
            raise ValueError(f"{name} must be 0..{classes - 1}")
    # Each pair (true, predicted) becomes one cell number true * classes + predicted.
    counts = np.bincount(labels * classes + predictions, minlength=classes * classes)
    return counts.reshape(classes, classes)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, with 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    result = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=result, where=denominator != 0)
    return result


@dataclass(frozen=True, eq=False)
class Evaluation:
    """A model's probabilities for labelled images, and the figures that follow from them.

    `probabilities` is float32 (N, 10), `labels` int64 (N,); `predictions` (the most probable
    digit of each image) and the other figures are derived when the evaluation is made.
    `calibration_error` is the expected calibration error: how far, on average, the confidence
    of a prediction is from the accuracy of predictions made with that confidence.
    """

    probabilities: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    predictions: np.ndarray = field(init=False, repr=False)
    confidences: np.ndarray = field(init=False, repr=False)  # probability of the prediction
    accuracy: float = field(init=False)
    loss: float = field(init=False)
    calibration_error: float = field(init=False)
    confusion: np.ndarray = field(init=False, repr=False)
    per_class: list[dict[str, float | int]] = field(init=False, repr=False)
    macro_f1: float = field(init=False)

    def __post_init__(self) -> None:
        probabilities = np.asarray(self.probabilities, dtype=np.float32)
        labels = np.asarray(self.labels)
        if probabilities.ndim != 2 or probabilities.shape[1] != NUM_CLASSES:
            raise ValueError(f"probabilities must have shape (N, 10), got {probabilities.shape}")
        if labels.shape != (len(probabilities),):
            raise ValueError(
                f"{len(probabilities)} rows of probabilities but labels have shape {labels.shape}"
            )
        if len(labels) == 0:
            raise ValueError("nothing to evaluate: there are no images")
        labels = labels.astype(np.int64, copy=False)
        predictions = probabilities.argmax(axis=1)
        confidences = probabilities[np.arange(len(labels)), predictions]
        confusion = confusion_matrix(labels, predictions)

        true_probabilities = np.clip(
            probabilities[np.arange(len(labels)), labels].astype(np.float64), EPSILON, 1 - EPSILON
        )
        correct = np.diag(confusion)
        support = confusion.sum(axis=1)
        predicted = confusion.sum(axis=0)
        precision = _safe_ratio(correct, predicted)
        recall = _safe_ratio(correct, support)
        f1 = _safe_ratio(2 * precision * recall, precision + recall)
        per_class = [
            {
                "digit": digit,
                "precision": float(precision[digit]),
                "recall": float(recall[digit]),
                "f1": float(f1[digit]),
                "support": int(support[digit]),
            }
            for digit in range(NUM_CLASSES)
        ]
        # Like scikit-learn, average over the digits that occur as labels or as predictions, so
        # a small test set without some digit is not marked down for it.
        present = (support > 0) | (predicted > 0)

        values = {
            "probabilities": probabilities,
            "labels": labels,
            "predictions": predictions.astype(np.int64),
            "confidences": confidences,
            "accuracy": float(correct.sum() / len(labels)),
            "loss": float(-np.log(true_probabilities).mean()),
            "calibration_error": expected_calibration_error(probabilities, labels),
            "confusion": confusion,
            "per_class": per_class,
            "macro_f1": float(f1[present].mean()),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def error_count(self) -> int:
        """Number of images whose prediction is wrong."""
        return int(len(self.labels) - np.trace(self.confusion))

    def mistakes(self, count: int | None = None) -> np.ndarray:
        """Indices of wrongly predicted images, the most confidently wrong first.

        At most `count` of them (all with None); ties keep the images' order.
        """
        wrong = np.flatnonzero(self.predictions != self.labels)
        order = np.argsort(-self.confidences[wrong], kind="stable")
        return wrong[order][:count]

    def as_dict(self) -> dict[str, Any]:
        """The figures as plain JSON-ready values; of the arrays only the confusion matrix."""
        return {
            "images": len(self),
            "errors": self.error_count,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "calibration_error": self.calibration_error,
            "macro_f1": self.macro_f1,
            "per_class": [dict(row) for row in self.per_class],
            "confusion": self.confusion.tolist(),
        }


def _is_keras_model(model: object) -> bool:
    # An object can only be a Keras model if Keras is already imported: don't import it here.
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)


def _predict_in_batches(
    predict: PredictFunction, images: np.ndarray, batch_size: int
) -> np.ndarray:
    parts = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        part = np.asarray(predict(batch), dtype=np.float32)
        if part.shape != (len(batch), NUM_CLASSES):
            raise DigitlabError(
                f"the predict function gave outputs of shape {part.shape} for {len(batch)} "
                f"images; expected ({len(batch)}, {NUM_CLASSES}) probabilities"
            )
        parts.append(part)
    return np.concatenate(parts)


def evaluate(
    model_or_predict_function: Any, dataset: Dataset, batch_size: int = 1024
) -> Evaluation:
    """Run a model over a labelled dataset and measure how well it does.

    `model_or_predict_function` is a keras.Model or any callable that maps uint8 images
    (N, 28, 28) to probabilities (N, 10); a callable is given at most `batch_size` images a call.
    """
    if not dataset.is_labelled:
        raise DigitlabError(
            f"cannot evaluate on {dataset.name}: it has no labels to compare the predictions with"
        )
    if len(dataset) == 0:
        raise DigitlabError(f"cannot evaluate on {dataset.name}: it has no images")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    model = model_or_predict_function
    if _is_keras_model(model):
        probabilities = np.asarray(
            model.predict(dataset.images, batch_size=batch_size, verbose=0), dtype=np.float32
        )
    elif callable(model):
        probabilities = _predict_in_batches(model, dataset.images, batch_size)
    else:
        raise TypeError(f"expected a keras.Model or a callable, got {type(model).__name__}")

    if probabilities.shape != (len(dataset), NUM_CLASSES):
        raise DigitlabError(
            f"the model gave outputs of shape {probabilities.shape} for {len(dataset)} images of "
            f"{dataset.name}; expected ({len(dataset)}, {NUM_CLASSES}) probabilities"
        )
    if not np.isfinite(probabilities).all():
        raise DigitlabError(
            f"the model gave NaN or infinite outputs on {dataset.name}; "
            "its training has probably diverged"
        )
    row_sums = probabilities.sum(axis=1, dtype=np.float64)
    if probabilities.min() < 0 or np.abs(row_sums - 1).max() > SUM_TOLERANCE:
        raise DigitlabError(
            f"the model's outputs on {dataset.name} are not probabilities (each row should be "
            "at least 0 and sum to 1); does its last layer use a softmax activation?"
        )
    return Evaluation(probabilities, dataset.labels)
