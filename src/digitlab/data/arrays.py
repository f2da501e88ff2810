"""The arrays and DataFrames a notebook holds, turned into a Dataset.

Images come as (N, 784), (N, 28, 28) or (N, 28, 28, 1) arrays of pixels: uint8, integers 0..255,
floats in [0, 1] (scaled to 0..255 and rounded), or floats holding whole numbers 0..255. Anything
else is refused, saying what was found: negative values (standardised pixels), fractions above 1
(scaled some other way) and values above 255 cannot be read back into pixels with certainty.
A float array whose largest value is at most 1 is taken as [0, 1]; so an image that is all but
black on the 0..255 scale would be read as bright, which real digits never are.

Labels come as integers 0..9 (N,) or (N, 1), floats holding them, one-hot rows (N, 10) with one 1
each, or a pandas Series. A DataFrame is in Kaggle's layout, as `pandas.read_csv("train.csv")`
gives it: an optional `label` column and `pixel0` .. `pixel783`.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from digitlab.data.dataset import Dataset
from digitlab.data.formats.kaggle_csv import PIXEL_COLUMNS, PIXELS
from digitlab.errors import DataError
from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

IMAGE_SHAPES = "(N, 784), (N, 28, 28) or (N, 28, 28, 1)"
PIXEL_KINDS = "uint8, integers 0..255, floats in [0, 1] or floats holding whole numbers 0..255"
LABEL_KINDS = "integers 0..9 of shape (N,), or one-hot rows of shape (N, 10)"


def _found(array: np.ndarray) -> str:
    """What an array is, as an error says it: dtype, shape and, for numbers, their range."""
    text = f"{array.dtype} of shape {array.shape}"
    if array.size and array.dtype.kind in "iuf":
        text += f", values {array.min():g} to {array.max():g}"
    return text


def _pixel_problem(array: np.ndarray) -> str | None:
    """Why these numbers are not pixels; None when they are."""
    if array.dtype.kind not in "iuf":
        return "not numbers" if array.dtype.kind != "b" else "true/false values, not pixel numbers"
    if not array.size:
        return None
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return "NaN or infinite values"
    low, high = array.min(), array.max()
    if low < 0:
        return "negative values (standardised, or scaled to [-1, 1]?); give the pixels before normalising"
    if high > 255:
        return "values above 255"
    if array.dtype.kind == "f" and high > 1 and not np.all(np.mod(array, 1) == 0):
        return "fractions above 1: neither [0, 1] floats nor whole pixel values 0..255"
    return None


def images_from_array(images: Any, name: str = "images") -> np.ndarray:
    """uint8 (N, 28, 28) images from an array in any of the accepted shapes and kinds."""
    array = given = np.asarray(images)
    if array.ndim == 2 and array.shape[1] == PIXELS:
        array = array.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    elif array.ndim == 4 and array.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE, 1):
        array = array[..., 0]
    if array.ndim != 3 or array.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(None, f"images must have shape {IMAGE_SHAPES}; found {_found(array)}", name)
    if array.dtype == np.uint8:
        return array
    problem = _pixel_problem(array)
    if problem is not None:
        raise DataError(None, f"images must be {PIXEL_KINDS}; found {_found(given)}: {problem}", name)
    if array.dtype.kind == "f":
        array = np.rint(array * 255.0 if array.size and array.max() <= 1 else array)
    return array.astype(np.uint8)


def labels_from_array(labels: Any, count: int, name: str = "labels") -> np.ndarray:
    """int64 (N,) digits from integer labels, floats holding them or one-hot rows, checked against
    the `count` images they label."""
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2 and array.shape[1] == NUM_CLASSES:
        array = _digits_of_one_hot(array, name)
    elif array.ndim != 1:
        raise DataError(None, f"labels must be {LABEL_KINDS}; found {_found(array)}", name)
    if len(array) != count:
        raise DataError(None, f"{count} images but {len(array)} labels", name)
    if array.dtype.kind not in "iuf" or (array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0)):
        raise DataError(None, f"labels must be {LABEL_KINDS}; found {_found(array)}", name)
    bad = np.flatnonzero((array < 0) | (array >= NUM_CLASSES))
    if len(bad):
        raise DataError(None, f"labels must be digits 0..9; labels[{bad[0]}] is {array[bad[0]]:g}", name)
    return array.astype(np.int64)


def _digits_of_one_hot(rows: np.ndarray, name: str) -> np.ndarray:
    if rows.dtype.kind not in "biuf":
        raise DataError(None, f"labels must be {LABEL_KINDS}; found {_found(rows)}", name)
    one_hot = ((rows == 0) | (rows == 1)).all(axis=1) & ((rows == 1).sum(axis=1) == 1)
    bad = np.flatnonzero(~one_hot)
    if len(bad):
        values = ", ".join(f"{value:g}" for value in rows[bad[0]].astype(np.float64))
        raise DataError(
            None,
            f"labels of shape (N, 10) must be one-hot, one 1 and nine 0s a row; row {bad[0]} is "
            f"[{values}] (for probabilities or smoothed labels give their argmax)",
            name,
        )
    return rows.argmax(axis=1)


def from_arrays(images: Any, labels: Any = None, name: str = "arrays") -> Dataset:
    """A Dataset of `images` and optional `labels`; see the module's docstring for their forms."""
    pixels = images_from_array(images, name)
    if labels is not None:
        labels = labels_from_array(labels, len(pixels), name)
    return Dataset(pixels, labels, name=name)


def _pandas() -> Any:
    """The pandas module if it is loaded (a DataFrame cannot exist otherwise), else None."""
    return sys.modules.get("pandas")


def is_dataframe(value: Any) -> bool:
    pandas = _pandas()
    return pandas is not None and isinstance(value, pandas.DataFrame)


def from_dataframe(frame: Any, name: str = "dataframe") -> Dataset:
    """A Dataset of a DataFrame in Kaggle's layout: an optional `label` column and `pixel0` ..
    `pixel783`, in any order; any other column, or a missing one, is an error naming it."""
    columns = list(frame.columns)
    labelled = "label" in columns
    expected = set(PIXEL_COLUMNS) | {"label"}
    unexpected = next((column for column in columns if column not in expected), None)
    if unexpected is not None:
        hint = " (an index saved with the CSV? read it with index_col=0)" if str(unexpected).startswith(
            "Unnamed") else ""
        raise DataError(None, f"the DataFrame has a column {unexpected!r}{hint}; Kaggle's layout is an "
                              "optional 'label' column and 'pixel0' .. 'pixel783'", name)
    missing = next((column for column in PIXEL_COLUMNS if column not in columns), None)
    if missing is not None:
        raise DataError(None, f"the DataFrame has no column {missing!r} ({len(columns)} columns); Kaggle's "
                              "layout is an optional 'label' column and 'pixel0' .. 'pixel783'", name)
    if len(set(columns)) != len(columns):
        repeated = next(column for column in columns if columns.count(column) > 1)
        raise DataError(None, f"the DataFrame has column {repeated!r} twice", name)
    labels = frame["label"].to_numpy() if labelled else None
    return from_arrays(frame[PIXEL_COLUMNS].to_numpy(), labels, name)


def as_dataset(value: Any, name: str = "arrays") -> Dataset:
    """A Dataset of digits held in memory: a Dataset (as it is), a pair `(images, labels)`, an
    images array or a DataFrame in Kaggle's layout."""
    if isinstance(value, Dataset):
        return value
    if is_dataframe(value):
        return from_dataframe(value, name)
    if isinstance(value, tuple) and len(value) == 2:
        return from_arrays(value[0], value[1], name)
    if isinstance(value, np.ndarray):
        return from_arrays(value, None, name)
    raise DataError(
        None,
        "expected a Dataset, a pair (images, labels) of arrays, an images array or a DataFrame "
        f"in Kaggle's layout; found {type(value).__name__}",
        name,
    )
