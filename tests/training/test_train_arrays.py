"""Training, predicting and evaluating on the arrays and DataFrames a notebook holds."""

import numpy as np
import pandas as pd
import pytest

import digitlab
from conftest import make_learnable_digits
from digitlab.data.sources import load_parts
from digitlab.runs.folder import run_config
from digitlab.training.fit import prepare_data

PIXEL_COLUMNS = [f"pixel{index}" for index in range(784)]


def _frame(dataset):
    frame = pd.DataFrame(dataset.images.reshape(len(dataset), 784), columns=PIXEL_COLUMNS)
    frame.insert(0, "label", dataset.labels)
    return frame


@pytest.fixture(scope="module")
def train_digits():
    return make_learnable_digits(300)


@pytest.fixture(scope="module")
def validation_digits():
    return make_learnable_digits(60, seed=7)


@pytest.fixture(scope="module")
def run(train_digits, validation_digits, tmp_path_factory):
    """One short run on [0, 1] float arrays with one-hot labels, validated on a Kaggle DataFrame."""
    images = (train_digits.images / 255.0)[..., np.newaxis]  # (N, 28, 28, 1), as Keras notebooks hold them
    one_hot = np.eye(10, dtype=np.float32)[train_digits.labels]
    return digitlab.train(data=(images, one_hot), validation=_frame(validation_digits), model="tiny-convnet",
                          epochs=1, batch_size=32, learning_rate=0.01, runs_dir=tmp_path_factory.mktemp("runs"),
                          verbose=0)


def test_data_in_memory_is_kept_in_the_run_folder_and_named_by_its_config(run, train_digits, validation_digits):
    config = run_config(run.path)  # what `digitlab train --resume RUN` reads
    assert config.data == str((run.path / "data" / "train.npz").resolve()) == run.config.data
    assert config.validation == str((run.path / "data" / "validation.npz").resolve()) == run.config.validation
    kept = load_parts(config.data)
    assert list(kept) == ["train"]
    assert np.array_equal(kept["train"].images, train_digits.images)
    assert np.array_equal(kept["train"].labels, train_digits.labels)
    splits = prepare_data(config)
    assert np.array_equal(splits.train.images, train_digits.images)
    assert np.array_equal(splits.validation.images, validation_digits.images)
    assert np.array_equal(splits.validation.labels, validation_digits.labels)
    assert splits.test is None


def test_a_run_on_arrays_reports_on_its_validation_data(run):
    assert run.config.recipe == "tiny-convnet" and run.path.name.endswith("-tiny-convnet")
    assert "test_accuracy" not in run.metrics
    assert run.metrics["validation_accuracy"] == pytest.approx(run.evaluate().accuracy, abs=1e-6)
    assert (run.path / "report.html").is_file()


def test_predict_takes_float_and_flat_arrays_as_it_takes_uint8(run, validation_digits):
    images = validation_digits.images
    expected = run.predict(images)
    assert np.array_equal(run.predict((images / 255.0).astype(np.float32)[..., np.newaxis]), expected)
    assert np.array_equal(run.predict(images.reshape(len(images), 784)), expected)
    assert np.array_equal(run.predict(_frame(validation_digits).drop(columns="label")), expected)
    classifier = digitlab.load_model(run.path)
    assert np.array_equal(classifier.predict(images / 255.0), expected)


def test_evaluate_takes_arrays_with_integer_or_one_hot_labels_and_dataframes(run, validation_digits):
    images, labels = validation_digits.images, validation_digits.labels
    expected = run.evaluate(validation_digits).accuracy
    assert run.evaluate((images / 255.0, labels)).accuracy == expected
    assert run.evaluate((images.reshape(-1, 784), np.eye(10)[labels])).accuracy == expected
    assert run.evaluate(_frame(validation_digits)).accuracy == expected
    with pytest.raises(digitlab.DigitlabError, match="no labels"):
        run.evaluate(images)


def test_submit_takes_kaggles_test_dataframe(run, validation_digits, tmp_path):
    test = _frame(validation_digits).drop(columns="label")
    lines = run.submit(test, tmp_path / "submission.csv").read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 61
    assert [int(line.split(",")[1]) for line in lines[1:]] == list(run.predict(validation_digits))
