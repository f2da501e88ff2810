"""Arrays and DataFrames as a notebook holds them become the Dataset digitlab reads from files."""

import numpy as np
import pandas as pd
import pytest

import digitlab
from conftest import make_digits
from digitlab.data.arrays import as_dataset
from digitlab.data.formats import kaggle_csv
from digitlab.errors import DataError

PIXEL_COLUMNS = [f"pixel{index}" for index in range(784)]


@pytest.fixture(scope="module")
def reference():
    """Every pixel value 0..255 occurs, so a rounding error anywhere would show."""
    return make_digits(40, seed=3)


IMAGE_FORMS = {
    "uint8 (N, 28, 28)": lambda images: images,
    "uint8 (N, 784)": lambda images: images.reshape(len(images), 784),
    "uint8 (N, 28, 28, 1)": lambda images: images[..., np.newaxis],
    "int64 (N, 28, 28)": lambda images: images.astype(np.int64),
    "int16 (N, 784)": lambda images: images.reshape(len(images), 784).astype(np.int16),
    "float32 [0, 1] (N, 28, 28, 1)": lambda images: (images / np.float32(255))[..., np.newaxis],
    "float64 [0, 1] (N, 784)": lambda images: images.reshape(len(images), 784) / 255.0,
    "float32 [0, 1] (N, 28, 28)": lambda images: images.astype(np.float32) / 255,
    "float64 whole 0..255 (N, 28, 28)": lambda images: images.astype(np.float64),
    "float32 whole 0..255 (N, 28, 28, 1)": lambda images: images.astype(np.float32)[..., np.newaxis],
}


@pytest.mark.parametrize("form", IMAGE_FORMS)
def test_every_accepted_image_form_gives_the_same_uint8_images(reference, form):
    dataset = digitlab.Dataset.from_arrays(IMAGE_FORMS[form](reference.images))
    assert dataset.images.dtype == np.uint8 and dataset.images.shape == (40, 28, 28)
    assert np.array_equal(dataset.images, reference.images)
    assert dataset.labels is None and dataset.name == "arrays"


LABEL_FORMS = {
    "int64 (N,)": lambda labels: labels,
    "uint8 (N,)": lambda labels: labels.astype(np.uint8),
    "int32 (N, 1)": lambda labels: labels.astype(np.int32)[:, np.newaxis],
    "float whole numbers": lambda labels: labels.astype(np.float64),
    "one-hot float32": lambda labels: np.eye(10, dtype=np.float32)[labels],
    "one-hot int": lambda labels: np.eye(10, dtype=np.int64)[labels],
    "one-hot bool": lambda labels: np.eye(10, dtype=bool)[labels],
    "pandas Series": lambda labels: pd.Series(labels, name="label"),
}


@pytest.mark.parametrize("form", LABEL_FORMS)
def test_one_hot_and_integer_labels_agree(reference, form):
    dataset = digitlab.Dataset.from_arrays(reference.images, LABEL_FORMS[form](reference.labels), name="mine")
    assert dataset.labels.dtype == np.int64
    assert np.array_equal(dataset.labels, reference.labels)
    assert dataset.name == "mine"


def _frame(dataset, labelled=True):
    frame = pd.DataFrame(dataset.images.reshape(len(dataset), 784), columns=PIXEL_COLUMNS)
    if labelled:
        frame.insert(0, "label", dataset.labels)
    return frame


def test_a_kaggle_dataframe_reads_as_the_csv_file_does(reference, tmp_path):
    path = kaggle_csv.write(tmp_path / "train.csv", reference)
    from_frame = digitlab.Dataset.from_dataframe(pd.read_csv(path))
    from_file = digitlab.load(path)
    assert np.array_equal(from_frame.images, from_file.images)
    assert np.array_equal(from_frame.labels, from_file.labels)
    unlabelled = digitlab.Dataset.from_dataframe(_frame(reference, labelled=False))
    assert np.array_equal(unlabelled.images, reference.images) and unlabelled.labels is None


def test_a_dataframe_with_the_label_last_and_float_pixels_is_read_too(reference):
    frame = _frame(reference, labelled=False) / 255.0
    frame["label"] = reference.labels
    dataset = digitlab.Dataset.from_dataframe(frame)
    assert np.array_equal(dataset.images, reference.images)
    assert np.array_equal(dataset.labels, reference.labels)


def test_as_dataset_takes_each_form_the_api_takes(reference):
    assert as_dataset(reference) is reference
    pair = as_dataset((reference.images / 255.0, np.eye(10)[reference.labels]), "data")
    bare = as_dataset(reference.images.reshape(40, 784))
    frame = as_dataset(_frame(reference))
    for dataset in (pair, frame):
        assert np.array_equal(dataset.images, reference.images)
        assert np.array_equal(dataset.labels, reference.labels)
    assert np.array_equal(bare.images, reference.images) and bare.labels is None
    assert pair.name == "data"


GOOD_IMAGES = np.zeros((4, 28, 28), np.uint8)
SHAPES = r"images must have shape \(N, 784\), \(N, 28, 28\) or \(N, 28, 28, 1\)"
KINDS = r"images must be uint8, integers 0\.\.255, floats in \[0, 1\] or floats holding whole numbers 0\.\.255"


@pytest.mark.parametrize("images, message", [
    (np.zeros((4, 27, 27), np.uint8), SHAPES + r"; found uint8 of shape \(4, 27, 27\)"),
    (np.zeros((4, 785), np.uint8), SHAPES + r"; found uint8 of shape \(4, 785\)"),
    (np.zeros((4, 28, 28, 3), np.uint8), SHAPES + r"; found uint8 of shape \(4, 28, 28, 3\)"),
    (np.zeros((28, 28), np.uint8), SHAPES + r"; found uint8 of shape \(28, 28\)"),
    ((np.arange(4 * 784).reshape(4, 28, 28) % 256 - 33.3) / 78.6,
     KINDS + r"; found float64 of shape \(4, 28, 28\), values -0\.42\d* to 2\.8\d*: negative values \(standardised"),
    (np.linspace(0, 2, 4 * 784).reshape(4, 28, 28),
     KINDS + r"; found float64 of shape \(4, 28, 28\), values 0 to 2: fractions above 1"),
    (np.full((4, 28, 28), 256, np.int64), KINDS + r"; found int64 .* values 256 to 256: values above 255"),
    (np.full((4, 784), -1, np.int32), KINDS + r"; found int32 .* values -1 to -1: negative values"),
    (np.full((4, 28, 28), np.nan), KINDS + r"; found float64 .*: NaN or infinite values"),
    (np.ones((4, 28, 28), bool), KINDS + r"; found bool of shape \(4, 28, 28\): true/false values"),
    (np.full((4, 784), "7"), KINDS + r"; found <U1 of shape \(4, 784\): not numbers"),
])
def test_images_it_cannot_read_as_pixels_are_refused_saying_what_was_found(images, message):
    with pytest.raises(DataError, match=message):
        digitlab.Dataset.from_arrays(images)


LABELS_EXPECTED = r"labels must be integers 0\.\.9 of shape \(N,\), or one-hot rows of shape \(N, 10\)"


@pytest.mark.parametrize("labels, message", [
    (np.full((4, 10), 0.1), r"must be one-hot, one 1 and nine 0s a row; row 0 is \[0\.1, 0\.1,"),
    (np.eye(10)[[1, 2, 3, 4]] * 0.9 + 0.01, r"must be one-hot.*row 0 is \[0\.01, 0\.91, 0\.01"),
    (np.eye(10)[[1, 2, 3, 4]] + np.eye(10)[[5, 5, 5, 5]], r"must be one-hot.*row 0 is \[0, 1, 0, 0, 0, 1,"),
    (np.array([1, 2, 10, 3]), r"labels must be digits 0\.\.9; labels\[2\] is 10"),
    (np.array([1, -1, 2, 3]), r"labels must be digits 0\.\.9; labels\[1\] is -1"),
    (np.arange(3), r"4 images but 3 labels"),
    (np.array([0.5, 1, 2, 3]), LABELS_EXPECTED + r"; found float64 of shape \(4,\), values 0\.5 to 3"),
    (np.zeros((4, 3), np.int64), LABELS_EXPECTED + r"; found int64 of shape \(4, 3\)"),
    (np.array(["1", "2", "3", "4"]), LABELS_EXPECTED + r"; found <U1 of shape \(4,\)"),
    (pd.Series([1, 2, None, 4]), LABELS_EXPECTED + r"; found float64 of shape \(4,\)"),
])
def test_labels_it_cannot_read_as_digits_are_refused_saying_what_was_expected(labels, message):
    with pytest.raises(DataError, match=message):
        digitlab.Dataset.from_arrays(GOOD_IMAGES, labels, name="mine")


def test_errors_name_the_data_they_are_about():
    with pytest.raises(DataError, match=r"^validation: images must have shape"):
        as_dataset(np.zeros((2, 10)), "validation")
    with pytest.raises(DataError, match=r"^data: expected a Dataset, a pair \(images, labels\) of arrays, an images "
                                        r"array or a DataFrame in Kaggle's layout; found list"):
        as_dataset([GOOD_IMAGES, np.zeros(4)], "data")


@pytest.mark.parametrize("change, message", [
    (lambda frame: frame.drop(columns="pixel5"), r"the DataFrame has no column 'pixel5'"),
    (lambda frame: frame.drop(columns=PIXEL_COLUMNS[700:]), r"the DataFrame has no column 'pixel700'"),
    (lambda frame: frame.reset_index().rename(columns={"index": "Unnamed: 0"}),
     r"has a column 'Unnamed: 0' \(an index saved with the CSV\? read it with index_col=0\)"),
    (lambda frame: frame.rename(columns={"label": "Label"}),
     r"has a column 'Label'; Kaggle's layout is an optional 'label' column and 'pixel0' \.\. 'pixel783'"),
    (lambda frame: frame.set_axis(range(785), axis=1), r"has a column 0;"),
    (lambda frame: frame.astype({"pixel3": float}).assign(pixel3=np.nan), r"found float64 .*: NaN or infinite"),
    (lambda frame: frame.assign(label=frame["label"] + 5), r"labels must be digits 0\.\.9; labels\[5\] is 10"),
])
def test_dataframes_not_in_kaggles_layout_are_refused_naming_the_column(reference, change, message):
    with pytest.raises(DataError, match=message):
        digitlab.Dataset.from_dataframe(change(_frame(reference)))
