"""Reading many image files at once: every file answered, prepared on every core, read in batches.

This is what `digitlab predict` does with photos, scans and drawings. `image_files` finds the
files of the inputs (image files, and folders searched through, label folders 0..9 included);
`read_files` reads them all and answers each with its status:

- "ok": digits were found and read,
- "no digit": the image holds no ink,
- "unreadable: <reason>": the file is missing, empty, damaged or not an image.

One bad file never ends the batch. `single_digits` answers files with the same statuses where
each is one digit read as a data source reads it (`digitlab predict --ray` over image folders).

Preparing an image (`digitlab.preparation.prepare`: decoding it and cutting out its
MNIST-style digits) takes most of the time, so for more than a few files it runs in one worker
process per core, a chunk of files per task; the workers import only the preparation, never
TensorFlow. The digits of many files go to the model together, in calls of
`DIGITS_PER_CALL` digits whichever way they were prepared, so a batch read by workers and one
read in this process give the same answers.

>>> files = image_files(["scans/"])                  # scans/3/a.png has the label 3
>>> results = read_files(classifier.predict_function, files)
>>> [(result.path.name, result.status, result.text) for result in results]
[('a.png', 'ok', '3'), ...]
"""

from __future__ import annotations

import math
import os
import re
import signal
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Union

import numpy as np

from digitlab.data.formats import idx
from digitlab.data.formats.image_folder import IMAGE_SUFFIXES, is_image_file, read_image, visible_entries
from digitlab.errors import DataError, DigitlabError, NoDigitError
from digitlab.preparation import prepare
from digitlab.recognition.readings import PredictFunction, Reading, predict_digits, read, reading_from
from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

__all__ = ["DIGITS_PER_CALL", "NO_DIGIT", "OK", "UNREADABLE", "FileReading", "ImageFile", "image_files",
           "is_image_input", "label_accuracy", "read_files", "single_digits", "status_counts"]

OK = "ok"
NO_DIGIT = "no digit"
UNREADABLE = "unreadable"

DIGITS_PER_CALL = 1024
IN_PROCESS_FILES = 64  # fewer files are prepared in this process: starting workers would cost more
MIN_CHUNK, MAX_CHUNK = 16, 256  # files per task sent to a worker
CHUNKS_PER_WORKER = 8  # small enough chunks to keep every worker busy to the end and show progress

_KAGGLE_NAMES = ("train", "validation", "test")
_LABEL_FOLDER = re.compile(r"^[0-9]$")

ProgressFunction = Callable[[int, int], None]
"""Called with (files done, files in all) as the reading goes on."""


@dataclass(frozen=True)
class ImageFile:
    """An image file to read, and its `label` when it lies in a folder named 0..9."""

    path: Path
    label: int | None = None


@dataclass
class FileReading:
    """What one file says: its `status` ("ok", "no digit" or "unreadable: <reason>"), the
    `reading` (None when unreadable) and the `label` of its folder, if any."""

    path: Path
    status: str
    reading: Reading | None
    label: int | None = None

    @property
    def text(self) -> str:
        """The digits read, such as "2026"; "" when none was found or the file is unreadable."""
        return self.reading.text if self.reading is not None else ""

    @property
    def confidence(self) -> float | None:
        """The reading's confidence (0.0 with no digit); None when the file is unreadable."""
        return self.reading.confidence if self.reading is not None else None

    @property
    def readable(self) -> bool:
        return self.reading is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: path, label, status, text, confidence and each digit (see `Reading.as_dict`)."""
        confidence = self.confidence
        return {
            "path": str(self.path),
            "label": self.label,
            "status": self.status,
            "text": self.text,
            "confidence": None if confidence is None else round(confidence, 6),
            "digits": [] if self.reading is None else self.reading.as_dict()["digits"],
        }


# Finding the files


def _is_dataset_file(path: Path) -> bool:
    """IDX, .npz and Kaggle's train.csv / test.csv (as `digitlab.data.sources` reads a folder)."""
    if is_image_file(path):
        return False
    name = path.name.lower()
    kaggle = name.endswith((".csv", ".csv.gz")) and name.split(".")[0] in _KAGGLE_NAMES
    return kaggle or name.endswith(".npz") or idx.kind_of(path) is not None


def is_image_input(text: str | Path) -> bool:
    """Whether an input is read as photos: an image file (by its suffix, whether it exists or
    not) or a folder with no dataset files (IDX, train.csv / test.csv, .npz) in it, such as
    label folders 0..9 of images. Anything else is a data source."""
    path = Path(text)
    if path.is_dir():
        return not any(entry.is_file() and _is_dataset_file(entry) for entry in visible_entries(path))
    return is_image_file(path)


def _images_under(folder: Path) -> list[ImageFile]:
    """The image files in `folder` and below, hidden files and folders skipped, sorted by path."""
    found: list[Path] = []

    def refuse(error: OSError) -> None:
        raise DataError(error.filename, f"cannot list the folder: {error.strerror or error}")

    for place, subfolders, names in os.walk(folder, onerror=refuse):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found += [Path(place) / name for name in names if is_image_file(Path(name))]
    found.sort(key=lambda path: path.relative_to(folder).parts)
    return [ImageFile(path, _folder_label(path, folder)) for path in found]


def _folder_label(path: Path, folder: Path) -> int | None:
    parent = path.parent
    inside = parent != folder
    return int(parent.name) if inside and _LABEL_FOLDER.match(parent.name) else None


def image_files(inputs: Sequence[str | Path]) -> list[ImageFile]:
    """The image files of `inputs` in order: files as given (existing or not: a missing one is
    answered "unreadable"), and the image files in each folder and its subfolders, sorted by
    path. A file in a folder named 0..9 inside a given folder has that digit as its label.
    Raises DataError for a folder without images."""
    files: list[ImageFile] = []
    for text in inputs:
        path = Path(text)
        if not path.is_dir():
            files.append(ImageFile(path))
            continue
        found = _images_under(path)
        if not found:
            raise DataError(path, f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder or below")
        files += found
    return files


# Preparing, in this process or in workers


_Prepared = Union[tuple[np.ndarray, list[tuple[int, int, int, int]]], str]
"""A prepared file: its digits, uint8 (K, 28, 28), and their boxes; or why it is unreadable."""


def _failure_reason(error: Exception) -> str:
    """Why a file could not be read, as its status gives it: a DataError's problem, else what was raised."""
    if isinstance(error, DataError):
        return error.problem
    return f"could not be prepared ({type(error).__name__}: {error})"


def _prepare_file(path: str, multi_digit: bool) -> _Prepared:
    try:
        prepared = prepare(path, multi_digit=multi_digit)
    except Exception as error:  # one odd file must not end the batch; its row says what happened
        return _failure_reason(error)
    digits = np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    if prepared.digits:
        digits = np.stack(prepared.digits)
    return digits, [box.as_tuple() for box in prepared.boxes]


def _prepare_chunk(paths: list[str], multi_digit: bool) -> list[_Prepared]:
    return [_prepare_file(path, multi_digit) for path in paths]


def _start_worker() -> None:
    # Ctrl-C reaches the workers too: they stop at once and quietly, and the reader reports it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _available_cpus() -> int:
    """The CPUs this process may run on (fewer than the machine's under a CPU limit)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _chunk_size(count: int, workers: int) -> int:
    return min(MAX_CHUNK, max(MIN_CHUNK, math.ceil(count / (workers * CHUNKS_PER_WORKER))))


def _prepared_chunks(paths: list[str], multi_digit: bool, workers: int) -> Iterator[list[_Prepared]]:
    """Each chunk of `paths` prepared, in order: by `workers` processes for enough files, else here."""
    size = _chunk_size(len(paths), workers)
    chunks = [paths[start : start + size] for start in range(0, len(paths), size)]
    if workers <= 1 or len(paths) < IN_PROCESS_FILES:
        for chunk in chunks:
            yield _prepare_chunk(chunk, multi_digit)
        return
    # "spawn": TensorFlow may be running in this process, and must not be forked.
    pool = ProcessPoolExecutor(min(workers, len(chunks)), mp_context=get_context("spawn"),
                               initializer=_start_worker)
    try:
        yield from pool.map(_prepare_chunk, chunks, [multi_digit] * len(chunks))
    except BrokenProcessPool:
        raise DigitlabError("a process preparing the images stopped unexpectedly (out of memory?); "
                            "try again with one worker (--workers 1)") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# Reading


def _unreadable(reason: str) -> str:
    return f"{UNREADABLE}: {reason}"


def _status(reading: Reading) -> str:
    return OK if reading.found else NO_DIGIT


class _BatchedPredictions:
    """Digits gathered across files and predicted `DIGITS_PER_CALL` at a time."""

    def __init__(self, predict_function: PredictFunction) -> None:
        self.predict_function = predict_function
        self.waiting: list[np.ndarray] = []
        self.waiting_count = 0
        self.done: list[np.ndarray] = []

    def add(self, digits: np.ndarray) -> None:
        self.waiting.append(digits)
        self.waiting_count += len(digits)
        while self.waiting_count >= DIGITS_PER_CALL:
            self._predict(DIGITS_PER_CALL)

    def _predict(self, count: int) -> None:
        gathered = np.concatenate(self.waiting)
        self.done.append(predict_digits(self.predict_function, gathered[:count]))
        self.waiting = [gathered[count:]]
        self.waiting_count -= count

    def all(self) -> np.ndarray:
        if self.waiting_count:
            self._predict(self.waiting_count)
        return np.concatenate(self.done) if self.done else np.zeros((0, NUM_CLASSES))


def _as_image_file(file: str | Path | ImageFile) -> ImageFile:
    return file if isinstance(file, ImageFile) else ImageFile(Path(file))


def read_files(
    predict_function: PredictFunction,
    files: Sequence[str | Path | ImageFile],
    multi_digit: bool = True,
    workers: int | None = None,
    debug_dir: str | Path | None = None,
    on_progress: ProgressFunction | None = None,
) -> list[FileReading]:
    """Read every file: one FileReading per file, in the order given, whatever the files hold.

    `predict_function` maps uint8 (N, 28, 28) digits to (N, 10) probabilities (a Classifier's
    `predict_function`). With `multi_digit` every digit of an image is read, left to right;
    without it, the main one. `workers` processes prepare the images (default: one per CPU; 1,
    or fewer than `IN_PROCESS_FILES` files, prepares them in this process). With `debug_dir`,
    each file is read on its own in this process and the 28x28 digits the model saw are written
    there (see `digitlab.recognition.readings.read`), named after the file, or after its folder and the
    file where two files share a name. `on_progress(done, total)` is called as files are done.

    The workers are started afresh ("spawn"), so a script calling this belongs under
    `if __name__ == "__main__":`, as with any process pool.
    """
    chosen = [_as_image_file(file) for file in files]
    if debug_dir is not None:
        if Path(debug_dir).exists() and not Path(debug_dir).is_dir():
            raise DigitlabError(f"{debug_dir}: is a file; the debug folder must be a folder (or not exist yet)")
        return _read_with_debug(predict_function, chosen, multi_digit, Path(debug_dir), on_progress)
    paths = [str(file.path) for file in chosen]
    prepared: list[_Prepared] = []
    predictions = _BatchedPredictions(predict_function)
    for chunk in _prepared_chunks(paths, multi_digit, workers or _available_cpus()):
        for result in chunk:
            if not isinstance(result, str) and len(result[0]):
                predictions.add(result[0])
        prepared += chunk
        if on_progress is not None:
            on_progress(len(prepared), len(chosen))
    probabilities = predictions.all()
    results = []
    used = 0
    for file, path, result in zip(chosen, paths, prepared):
        if isinstance(result, str):
            results.append(FileReading(file.path, _unreadable(result), None, file.label))
            continue
        digits, boxes = result
        reading = reading_from(path, list(digits), boxes, probabilities[used : used + len(digits)])
        used += len(digits)
        results.append(FileReading(file.path, _status(reading), reading, file.label))
    return results


def _debug_stems(files: list[ImageFile]) -> list[str]:
    """A distinct debug name per file: its stem, else folder-stem, else that and its position."""
    stems = [file.path.stem or "image" for file in files]
    stem_counts = Counter(stems)
    named = [f"{file.path.parent.name}-{stem}" if stem_counts[stem] > 1 else stem
             for file, stem in zip(files, stems)]
    name_counts = Counter(named)
    return [f"{name}-{position}" if name_counts[name] > 1 else name for position, name in enumerate(named)]


def _read_with_debug(
    predict_function: PredictFunction, files: list[ImageFile], multi_digit: bool, debug_dir: Path,
    on_progress: ProgressFunction | None,
) -> list[FileReading]:
    results = []
    for file, stem in zip(files, _debug_stems(files)):
        try:
            reading = read(predict_function, file.path, multi_digit, debug_dir, debug_stem=stem)
            results.append(FileReading(file.path, _status(reading), reading, file.label))
        except DataError as error:
            results.append(FileReading(file.path, _unreadable(error.problem), None, file.label))
        if on_progress is not None:
            on_progress(len(results), len(files))
    return results


def _single_digit(path: Path) -> tuple[np.ndarray | None, str]:
    try:
        return read_image(path), OK
    except NoDigitError:
        return None, NO_DIGIT
    except Exception as error:  # one odd file must not end the batch; its row says what happened
        return None, _unreadable(_failure_reason(error))


def single_digits(paths: Sequence[str | Path]) -> tuple[np.ndarray, list[str]]:
    """Each image file read as one 28x28 digit, as a data source reads it (`image_folder.read_image`:
    28x28 grey images as they are, others prepared), with its status: "ok", "no digit" or
    "unreadable: <reason>". A bad file never stops the others. Returns the digits of the files
    that are "ok", uint8 (K, 28, 28) in order, and every file's status."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_single_digit, [Path(path) for path in paths]))
    digits = [digit for digit, _ in results if digit is not None]
    stacked = np.stack(digits) if digits else np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    return stacked, [status for _, status in results]


# Summing up


def status_counts(results: Sequence[FileReading]) -> dict[str, int]:
    """How many files were "ok", "no digit" and "unreadable" (whatever the reason), in that order."""
    counts = {OK: 0, NO_DIGIT: 0, UNREADABLE: 0}
    for result in results:
        counts[result.status if result.readable else UNREADABLE] += 1
    return counts


def label_accuracy(results: Sequence[FileReading]) -> float | None:
    """The share of files read as their folder's label (a file with no digit or unreadable is
    wrong); None unless every file has a label."""
    if not results or any(result.label is None for result in results):
        return None
    return sum(result.text == str(result.label) for result in results) / len(results)
