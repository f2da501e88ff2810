"""Kaggle "Digit Recognizer" CSV: train.csv (label, pixel0..pixel783) and test.csv (pixels only).

Well-formed files take the fast path (Arrow's multi-threaded parser). When that parser or the
range checks find anything wrong, a line-by-line scan finds the first bad line and says what is
wrong with it, so the fast path never has to know about line numbers.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from digitlab.data.compressed import reading_errors
from digitlab.data.dataset import Dataset
from digitlab.errors import DataError
from digitlab.outputs import write_file
from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

PIXELS = IMAGE_SIDE * IMAGE_SIDE
PIXEL_COLUMNS = [f"pixel{index}" for index in range(PIXELS)]
_WELL_FORMED_VALUE = re.compile(r"\d{1,3}")


_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, as surrogateescape keeps them


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without its line break), counting from 1; a DataError at the first
    line holding bytes that are not UTF-8."""
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if _UNDECODED.search(line):
                raise DataError(path, "not a text file (CSV expected): bytes that are not UTF-8", f"line {number}")
            yield number, line.rstrip("\r\n")


def read_header(path: Path) -> list[str]:
    """The column names, checked against Kaggle's layout."""
    try:
        with reading_errors(path, "a CSV file"):
            first = next(_lines(path), None)
    except UnicodeDecodeError:
        raise DataError(path, "not a text file (CSV expected)", "line 1") from None
    if first is None or not first[1].strip():
        raise DataError(path, "the file is empty")
    columns = [name.strip().strip('"') for name in first[1].split(",")]
    labelled = columns[:1] == ["label"]
    expected = (["label"] if labelled else []) + PIXEL_COLUMNS
    if columns != expected:
        found = next(
            (position for position, (got, want) in enumerate(zip(columns, expected)) if got != want),
            min(len(columns), len(expected)),
        )
        detail = (
            f"column {found + 1} is {_clipped(columns[found])}, expected {expected[found]!r}"
            if found < min(len(columns), len(expected))
            else f"{len(columns)} columns, expected {len(expected)}"
        )
        separator = next((mark for mark in (";", "\t", "|") if mark in first[1] and len(columns) == 1), None)
        if separator is not None:
            detail += f" (its columns are separated by {separator!r}; Kaggle's CSV uses commas)"
        raise DataError(
            path,
            "header is not Kaggle's 'label,pixel0,...,pixel783' (train.csv) or "
            f"'pixel0,...,pixel783' (test.csv): {detail}",
            "line 1",
        )
    return columns


def _clipped(text: str, length: int = 40) -> str:
    """A column name as an error shows it: quoted, cut short when long (a whole header run together)."""
    return repr(text) if len(text) <= length else f"{text[:length]!r}... ({len(text):,} characters)"


def _problem_in_value(token: str, column: str) -> str | None:
    value = token.strip().strip('"')
    if value == "":
        return f"{column} is empty"
    try:
        number = int(value)
    except ValueError:
        return f"{column} is {value!r}, not a whole number"
    if column == "label":
        return None if 0 <= number < NUM_CLASSES else f"label {number} is outside 0..9"
    return None if 0 <= number <= 255 else f"{column} is {number}, outside 0..255"


def find_bad_line(path: Path, columns: list[str]) -> DataError | None:
    """The first line that is not a valid row, as an error naming it; None if all are valid."""
    rows = 0
    lines = _lines(path)
    for number, line in lines:
        if number == 1:
            continue
        if not line.strip():
            continue
        rows += 1
        tokens = line.split(",")
        if len(tokens) != len(columns):
            last = next(lines, None) is None
            hint = (" (the file ends in the middle of this row: truncated?)"
                    if last and len(tokens) < len(columns) else "")
            return DataError(path, f"{len(tokens)} values, expected {len(columns)}{hint}", f"line {number}")
        if all(_WELL_FORMED_VALUE.fullmatch(token) for token in tokens):
            numbers = [int(token) for token in tokens]
            if max(numbers) <= 255 and (columns[0] != "label" or numbers[0] < NUM_CLASSES):
                continue
        for token, column in zip(tokens, columns):
            problem = _problem_in_value(token, column)
            if problem:
                return DataError(path, problem, f"line {number}")
    if rows == 0:
        return DataError(path, "has a header but no rows")
    return None


def _read_fast(path: Path, columns: list[str]) -> np.ndarray | None:
    """All values as int16 (rows, columns), or None when anything is off."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    try:
        table = arrow_csv.read_csv(
            path,
            read_options=arrow_csv.ReadOptions(column_names=columns, skip_rows=1),
            convert_options=arrow_csv.ConvertOptions(
                column_types={name: pa.int16() for name in columns}, strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError):
        return None
    if table.num_rows == 0 or any(column.null_count for column in table.columns):
        return None
    values = np.column_stack([column.to_numpy() for column in table.columns])
    pixels = values[:, 1:] if columns[0] == "label" else values
    if pixels.min() < 0 or pixels.max() > 255:
        return None
    if columns[0] == "label" and (values[:, 0].min() < 0 or values[:, 0].max() >= NUM_CLASSES):
        return None
    return values


def _scan(path: Path, columns: list[str]) -> DataError | None:
    """`find_bad_line`, with a damaged file (gzip, encoding, I/O) reported as a DataError."""
    try:
        with reading_errors(path, "a CSV file"):
            return find_bad_line(path, columns)
    except DataError as error:
        return error
    except UnicodeDecodeError as error:
        return DataError(path, f"not a text file (CSV expected): undecodable byte at offset {error.start} of a line")


def read(path: str | Path) -> Dataset:
    """A Kaggle train.csv (labelled) or test.csv (unlabelled) file, .csv or .csv.gz."""
    path = Path(path)
    columns = read_header(path)
    values = _read_fast(path, columns)
    if values is None:
        error = _scan(path, columns)
        if error is not None:
            raise error
        raise DataError(path, "could not be read as a Kaggle CSV file")
    labelled = columns[0] == "label"
    pixels = values[:, 1:] if labelled else values
    images = pixels.astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    labels = values[:, 0].astype(np.int64) if labelled else None
    name = path.name.removesuffix(".gz").removesuffix(".csv")
    return Dataset(images, labels, name=name, origin=str(path))


def write(path: str | Path, dataset: Dataset, force: bool = False, with_labels: bool = True) -> Path:
    """Write in Kaggle's layout; unlabelled data (or with_labels=False) gives test.csv's layout."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    pixels = dataset.images.reshape(len(dataset), PIXELS)
    arrays = [pa.array(pixels[:, index]) for index in range(PIXELS)]
    names = list(PIXEL_COLUMNS)
    if with_labels and dataset.labels is not None:
        arrays.insert(0, pa.array(dataset.labels.astype(np.uint8)))
        names.insert(0, "label")
    table = pa.table(arrays, names=names)
    header = (",".join(names) + "\n").encode()
    options = arrow_csv.WriteOptions(include_header=False, quoting_style="none")

    def write_table(temporary: Path) -> None:
        with pa.OSFile(str(temporary), "wb") as raw:
            stream = pa.CompressedOutputStream(raw, "gzip") if temporary.suffix == ".gz" else raw
            stream.write(header)
            arrow_csv.write_csv(table, stream, write_options=options)
            if stream is not raw:
                stream.close()

    return write_file(path, write_table, force)
