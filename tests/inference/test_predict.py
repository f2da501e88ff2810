"""Models load from .keras files, run folders and legacy .h5 files, and predictions are written
exactly as Kaggle wants them, never over an existing file unasked."""

from __future__ import annotations

import csv
import warnings
import zipfile

# Keras after digitlab, which picks the backend.
import keras
import numpy as np
import pytest
from keras import layers

from conftest import make_digits
from digitlab.data.dataset import Dataset
from digitlab.data.formats import kaggle_csv
from digitlab.errors import DigitlabError, OutputExistsError
from digitlab.inference.model_files import ModelError, input_adapter, load_model
from digitlab.inference.predict import predict_probabilities, submit, write_predictions, write_submission


def tiny_model(classes: int = 10) -> keras.Model:
    """A digitlab-style model: raw uint8 (N, 28, 28) in, softmax out."""
    return keras.Sequential(
        [
            keras.Input((28, 28), dtype="uint8"),
            layers.Rescaling(1 / 255),
            layers.Flatten(),
            layers.Dense(classes, activation="softmax"),
        ]
    )


def legacy_model(input_shape: tuple[int, ...]) -> keras.Model:
    """A notebook-style model: float input scaled to [0, 1], no Rescaling layer."""
    body = [layers.Conv2D(4, 3, activation="relu"), layers.Flatten()] if len(input_shape) == 3 else []
    return keras.Sequential(
        [keras.Input(input_shape), *body, layers.Dense(10, activation="softmax")]
    )


def save(model: keras.Model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras calls .h5 "legacy" when saving one
        model.save(path)
    return path


def direct(model: keras.Model, inputs: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(inputs, training=False))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return make_digits(50, seed=3).images


def test_keras_file_loads_back_with_identical_predictions(tmp_path, images):
    model = tiny_model()
    loaded = load_model(save(model, tmp_path / "digits.keras"))
    expected = direct(model, images)
    probabilities = predict_probabilities(loaded, images)
    assert probabilities.dtype == np.float32 and probabilities.shape == (50, 10)
    np.testing.assert_array_equal(probabilities, predict_probabilities(model, images))
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)


def test_run_folder_loads_its_model(tmp_path, images):
    model = tiny_model()
    run_folder = tmp_path / "runs" / "2024-05-01-120000-tiny"
    run_folder.mkdir(parents=True)
    save(model, run_folder / "model.keras")
    loaded = load_model(run_folder)
    np.testing.assert_allclose(predict_probabilities(loaded, images), direct(model, images), atol=1e-6)


@pytest.mark.parametrize("input_shape", [(28, 28, 1), (784,)])
def test_legacy_float_model_gets_reshaped_images_scaled_to_one(tmp_path, images, input_shape):
    model = legacy_model(input_shape)
    loaded = load_model(save(model, tmp_path / "cnn_for_mnist.h5"))
    scaled = images.reshape(-1, *input_shape).astype(np.float32) / 255
    np.testing.assert_allclose(predict_probabilities(loaded, images), direct(model, scaled), atol=1e-6)


def test_float_model_with_own_rescaling_gets_raw_pixels(images):
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Rescaling(1 / 255),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ]
    )
    raw = images[..., None].astype(np.float32)
    np.testing.assert_allclose(predict_probabilities(model, images), direct(model, raw), atol=1e-6)


def test_logits_become_probabilities_and_batches_join_up(images):
    model = keras.Sequential(
        [keras.Input((28, 28), dtype="uint8"), layers.Rescaling(1 / 255), layers.Flatten(), layers.Dense(10)]
    )
    logits = direct(model, images)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probabilities = predict_probabilities(model, images, batch_size=7)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    assert predict_probabilities(model, images[:0]).shape == (0, 10)


def write_bad_model(kind: str, folder):
    """A model path that must be refused, made in `folder`."""
    if kind == "missing":
        return folder / "nowhere.keras"
    if kind == "random-keras":
        path = folder / "noise.keras"
        path.write_bytes(np.random.default_rng(0).bytes(500))
        return path
    if kind == "random-h5":
        path = folder / "noise.h5"
        path.write_bytes(np.random.default_rng(0).bytes(500))
        return path
    if kind == "csv":
        path = folder / "test.csv"
        kaggle_csv.write(path, make_digits(3, labelled=False))
        return path
    if kind == "folder-without-model":
        path = folder / "runs" / "empty-run"
        path.mkdir(parents=True)
        (path / "history.csv").write_text("epoch,loss\n")
        return path
    if kind == "zip-not-keras":
        path = folder / "notes.keras"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "not a model")
        return path
    if kind == "weights-only":
        path = folder / "weights.h5"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            legacy_model((784,)).save_weights(folder / "weights.weights.h5")
        (folder / "weights.weights.h5").rename(path)
        return path
    if kind == "lambda":
        model = keras.Sequential(
            [keras.Input((28, 28)), layers.Lambda(lambda x: x / 255), layers.Flatten(), layers.Dense(10)]
        )
        return save(model, folder / "lambda_model.keras")
    if kind == "input-32x32x3":
        model = keras.Sequential(
            [keras.Input((32, 32, 3)), layers.Flatten(), layers.Dense(10, activation="softmax")]
        )
        return save(model, folder / "cifar.keras")
    if kind == "five-classes":
        return save(tiny_model(classes=5), folder / "five.keras")
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "no such file"),
        ("random-keras", "not a zip archive"),
        ("random-h5", "not in HDF5 format"),
        ("csv", "not a model file"),
        ("folder-without-model", "no model.keras"),
        ("zip-not-keras", "no config.json"),
        ("weights-only", "only weights"),
        ("lambda", "safe mode"),
        ("input-32x32x3", "(N, 32, 32, 3)"),
        ("five-classes", "(N, 5)"),
    ],
)
def test_bad_model_files_are_refused_naming_the_file(tmp_path, kind, words):
    path = write_bad_model(kind, tmp_path)
    with pytest.raises(ModelError) as raised:
        load_model(path)
    message = str(raised.value)
    assert isinstance(raised.value, DigitlabError)
    assert path.name in message and words in message
    assert "\n" not in message


def test_unfit_model_in_memory_is_refused_naming_shapes():
    model = keras.Sequential([keras.Input((32, 32, 3)), layers.Flatten(), layers.Dense(10)])
    with pytest.raises(ModelError, match=r"\(N, 32, 32, 3\)"):
        input_adapter(model)


def test_submission_is_byte_exact(tmp_path):
    path = write_submission(tmp_path / "submission.csv", np.array([7, 2, 1, 0]))
    assert path.read_bytes() == b"ImageId,Label\n1,7\n2,2\n3,1\n4,0\n"


def test_submit_writes_one_row_per_test_row_and_never_overwrites_unasked(tmp_path):
    model = tiny_model()
    model_path = save(model, tmp_path / "model.keras")
    test = make_digits(23, seed=5, labelled=False)
    test_path = kaggle_csv.write(tmp_path / "test.csv", test)
    output = tmp_path / "submission.csv"

    assert submit(model_path, test_path, output) == output
    lines = output.read_bytes().split(b"\n")
    assert lines[0] == b"ImageId,Label" and lines[-1] == b"" and len(lines) == 23 + 2
    expected = direct(model, test.images).argmax(axis=1)
    rows = [line.decode().split(",") for line in lines[1:-1]]
    assert [int(image_id) for image_id, _ in rows] == list(range(1, 24))
    assert [int(label) for _, label in rows] == expected.tolist()

    before = output.read_bytes()
    with pytest.raises(OutputExistsError):
        submit(model_path, test_path, output)
    with pytest.raises(OutputExistsError):
        write_submission(output, np.zeros(23, dtype=np.int64))
    assert output.read_bytes() == before
    write_submission(output, np.zeros(23, dtype=np.int64), force=True)
    assert output.read_bytes().startswith(b"ImageId,Label\n1,0\n2,0\n")


def test_predictions_csv_round_trips(tmp_path, images):
    dataset = Dataset(images, name="check")
    probabilities = predict_probabilities(tiny_model(), dataset)
    path = write_predictions(tmp_path / "predictions.csv", dataset, probabilities)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "label", *(f"p{digit}" for digit in range(10))]
    body = rows[1:]
    assert [int(row[0]) for row in body] == list(range(1, len(images) + 1))  # from 1, as ImageId
    read_back = np.array([[float(value) for value in row[2:]] for row in body])
    assert [int(row[1]) for row in body] == probabilities.argmax(axis=1).tolist()
    assert all(len(value.split(".")[1]) == 6 for value in body[0][2:])
    np.testing.assert_allclose(read_back, probabilities, atol=5e-7)
    np.testing.assert_allclose(read_back.sum(axis=1), 1.0, atol=1e-4)

    with pytest.raises(OutputExistsError):
        write_predictions(path, dataset, probabilities)
    with pytest.raises(ValueError, match="shape"):
        write_predictions(tmp_path / "other.csv", dataset, probabilities[:3])
