"""Predicting digits with a trained model, and writing predictions and Kaggle submissions.

Kaggle's "Digit Recognizer" wants a CSV with the header `ImageId,Label` and one row per row of
its test.csv, ImageId counting from 1; the `id` of predictions counts the same way, so row `id`
of predictions.csv is row `ImageId` of the submission (and the id-th image of the source). Like
every digitlab output, these files are written whole or not at all, and never replace an
existing file unless asked to.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digitlab.data.dataset import Dataset
from digitlab.data.sources import load_parts
from digitlab.inference.columns import FILE_COLUMNS, FIRST_ID, PREDICTION_COLUMNS
from digitlab.inference.model_files import DEFAULT_BATCH_SIZE, OnnxModel, input_adapter
from digitlab.outputs import check_new, write_bytes
from digitlab.shape import NUM_CLASSES

if TYPE_CHECKING:
    import keras

__all__ = ["FIRST_ID", "PREDICTION_COLUMNS", "predict_probabilities", "submit", "write_file_predictions",
           "write_predictions", "write_submission"]

SUBMISSION_HEADER = "ImageId,Label"


def predict_probabilities(
    model: keras.Model | OnnxModel, images: np.ndarray | Dataset, batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """The model's float32 (N, 10) probabilities for uint8 (N, 28, 28) images (or a Dataset).

    Images are reshaped and scaled to what the model takes; see `digitlab.inference.model_files.input_adapter`.
    """
    return input_adapter(model, batch_size=batch_size)(images)


def _checked_probabilities(probabilities: np.ndarray, count: int) -> np.ndarray:
    probabilities = np.asarray(probabilities)
    if probabilities.shape != (count, NUM_CLASSES):
        raise ValueError(
            f"probabilities must have shape ({count}, {NUM_CLASSES}) for {count} images, "
            f"got {probabilities.shape}"
        )
    return probabilities


def write_predictions(
    path: str | Path, dataset: Dataset, probabilities: np.ndarray, force: bool = False, first_id: int = FIRST_ID
) -> Path:
    """Write `id,label,p0,...,p9`: one row per image of `dataset`, ids from `first_id` (1, as
    a submission's ImageId, so the id-th image has id `id`).

    `label` is the predicted digit (the most probable one); probabilities have 6 decimals.
    Refuses to replace an existing file unless `force`.
    """
    probabilities = _checked_probabilities(probabilities, len(dataset))
    check_new(path, force)
    table = np.column_stack(
        [np.arange(first_id, first_id + len(dataset)), probabilities.argmax(axis=1), probabilities.astype(np.float64)]
    )
    buffer = io.BytesIO()
    np.savetxt(
        buffer,
        table,
        fmt=["%d", "%d"] + ["%.6f"] * NUM_CLASSES,
        delimiter=",",
        newline="\n",
        header=",".join(PREDICTION_COLUMNS),
        comments="",
    )
    return write_bytes(path, buffer.getvalue(), force)


def write_file_predictions(
    path: str | Path, files: list[str], statuses: list[str], probabilities: np.ndarray, force: bool = False,
    first_id: int = FIRST_ID,
) -> Path:
    """Write `id,label,p0,...,p9,path,status`: one row per image file, in order, ids from `first_id`.

    `statuses` are the files' ("ok", "no digit" or "unreadable: <reason>", as
    `digitlab.recognition.batch.single_digits` gives them) and `probabilities` the predictions of
    the files that are "ok", in order; the other rows leave label and probabilities empty.
    """
    from digitlab.recognition.batch import OK

    probabilities = _checked_probabilities(probabilities, sum(status == OK for status in statuses))
    if len(files) != len(statuses):
        raise ValueError(f"{len(files)} files but {len(statuses)} statuses")
    check_new(path, force)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*PREDICTION_COLUMNS, *FILE_COLUMNS])
    predicted = iter(probabilities.astype(np.float64))
    for image_id, (file, status) in enumerate(zip(files, statuses), start=first_id):
        row = next(predicted) if status == OK else None
        figures = [""] * (1 + NUM_CLASSES) if row is None else [str(row.argmax()), *(f"{value:.6f}" for value in row)]
        writer.writerow([image_id, *figures, file, status])
    # surrogateescape: a file name that is not UTF-8 is written back as the bytes it was
    return write_bytes(path, buffer.getvalue().encode("utf-8", "surrogateescape"), force)


def write_submission(path: str | Path, labels: np.ndarray, force: bool = False) -> Path:
    """Write a Kaggle Digit Recognizer submission: `ImageId,Label`, ImageId from 1, `\\n` endings.

    `labels` holds one predicted digit 0..9 per test row, in test.csv's order. Refuses to
    replace an existing file unless `force`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,), one digit per test row; got {labels.shape}")
    if len(labels) == 0:
        raise ValueError("no labels to submit")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be whole numbers 0..9, got {labels.dtype}")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels must be 0..9, found {labels.min()}..{labels.max()}")
    check_new(path, force)
    rows = (f"{image_id},{label}" for image_id, label in enumerate(labels.tolist(), start=1))
    text = "\n".join([SUBMISSION_HEADER, *rows]) + "\n"
    # Bytes, not text: text mode would write \r\n on Windows.
    return write_bytes(path, text.encode("ascii"), force)


def labelled_submission_warning(source: str | Path, labels: np.ndarray, predicted: np.ndarray) -> str:
    """One line warning that a submission was made for labelled data (such as train.csv), with
    the accuracy of the predictions on those labels."""
    accuracy = float(np.mean(np.asarray(predicted) == np.asarray(labels)))
    return (f"warning: {source} has a label column: a submission is normally made for the unlabelled "
            f"test.csv; written all the same (accuracy on its labels: {accuracy:.2%})")


def images_to_predict(source: str | Path, offline: bool = False) -> Dataset:
    """The source's "test" part if it has one (a folder with train.csv and test.csv), else its first part."""
    parts = load_parts(source, offline=offline)
    return parts["test"] if "test" in parts else next(iter(parts.values()))


def submit(
    model_path: str | Path,
    test_source: str | Path,
    output_path: str | Path,
    force: bool = False,
    offline: bool = False,
) -> Path:
    """Predict Kaggle's test.csv (or any source) with a saved model and write the submission.

    `model_path` is a .keras file, a run folder or a legacy .h5 file; labels in the source, if
    any, are ignored. The output is checked first, so an existing file is refused before the
    slow work. Returns the path written.
    """
    from digitlab.inference.classifier import load_model as load_classifier  # it imports this module

    output_path = check_new(output_path, force)
    return load_classifier(model_path).submit(test_source, output_path, force, offline)


READING_COLUMNS = ["path", "label", "status", "text", "confidence", "digits", "top3"]


def _digit_confidences(reading) -> str:
    """'2:0.9912 0:0.9850': each digit read, left to right, with its probability."""
    return " ".join(f"{digit.digit}:{digit.confidence:.4f}" for digit in reading.digits)


def _top3(reading) -> str:
    """'2:0.9912 7:0.0051 3:0.0011|0:0.9850 …': each digit's three likeliest, digits apart by '|'."""
    return "|".join(
        " ".join(f"{digit}:{probability:.4f}" for digit, probability in entry.top3) for entry in reading.digits
    )


def write_readings(path: str | Path, results: list, force: bool = False) -> Path:
    """The readings of image files (`digitlab.recognition.batch.FileReading`), one per file, in order.

    `.json`: a list of objects with path, label, status, text, confidence and each digit's
    details (see `FileReading.as_dict`). Otherwise CSV with the columns path, label (the digit of
    the folder 0..9 holding the file, else empty), status ("ok", "no digit" or "unreadable:
    <reason>"), text, confidence (6 decimals; empty when unreadable), digits (each digit with its
    probability, `2:0.9912 0:0.9850`) and top3 (each digit's three likeliest, `|` between digits).
    Written whole or not at all; refuses to replace a file unless `force`.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        text = json.dumps([result.as_dict() for result in results], indent=2) + "\n"
        return write_bytes(path, text.encode(), force)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(READING_COLUMNS)
    for result in results:
        reading = result.reading
        confidence = "" if reading is None else f"{reading.confidence:.6f}"
        details = ("", "") if reading is None else (_digit_confidences(reading), _top3(reading))
        writer.writerow([result.path, "" if result.label is None else result.label, result.status,
                         result.text, confidence, *details])
    # surrogateescape: a file name that is not UTF-8 is written back as the bytes it was
    return write_bytes(path, buffer.getvalue().encode("utf-8", "surrogateescape"), force)
