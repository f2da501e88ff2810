"""Temperature scaling: the fit, the calibration error, the temperature stored in the model, and
a trained run calibrated once on its validation split (resumed or not)."""

import json
import shutil

# Keras after digitlab, which picks the backend.
import keras
import numpy as np
import pytest
from keras import layers

from conftest import make_digits, make_learnable_digits
from digitlab import models
from digitlab.data.convert import convert
from digitlab.data.dataset import Dataset
from digitlab.evaluation.calibration import (
    apply_temperature,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    logits,
    softmax,
)
from digitlab.recipes.config import resolve
from digitlab.training import checkpoints


def sampled_labels(probabilities: np.ndarray, seed: int = 1) -> np.ndarray:
    """One label drawn from each row of `probabilities`."""
    cumulative = probabilities.cumsum(axis=1)
    draws = np.random.default_rng(seed).random((len(probabilities), 1))
    return np.minimum((draws > cumulative).sum(axis=1), probabilities.shape[1] - 1)


def random_logits(count: int = 20_000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, size=(count, 10))


@pytest.mark.parametrize("true_temperature", [0.4, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with(true_temperature):
    scores = random_logits()
    labels = sampled_labels(softmax(scores, true_temperature))
    assert fit_temperature(scores, labels) == pytest.approx(true_temperature, rel=0.05)


def test_calibration_error_of_a_hand_made_case():
    # Confidence 0.95 right and wrong (bin 0.933..1: accuracy 0.5), 0.55 right (bin 0.533..0.6).
    probabilities = np.full((3, 10), 0.05 / 9)
    probabilities[[0, 1], [2, 2]] = 0.95
    probabilities[2] = 0.45 / 9
    probabilities[2, 4] = 0.55
    labels = np.array([2, 3, 4])
    assert expected_calibration_error(probabilities, labels) == pytest.approx((2 * 0.45 + 0.45) / 3)


def test_calibration_error_is_near_zero_when_calibrated_and_large_when_over_confident():
    scores = random_logits(50_000)
    probabilities = softmax(scores)
    labels = sampled_labels(probabilities)
    assert expected_calibration_error(probabilities, labels) < 0.01
    over_confident = softmax(scores, 0.3)
    assert expected_calibration_error(over_confident, labels) > 0.1
    assert expected_calibration_error(softmax(scores, fit_temperature(scores, labels)), labels) < 0.01


def test_temperature_in_the_last_layer_gives_softmax_of_logits_over_t(tmp_path):
    model = models.create("tiny-convnet")
    images = make_digits(40, seed=2).images
    before = logits(model, images)
    apply_temperature(model, 2.5)
    expected = softmax(before, 2.5)
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-6)
    model.save(tmp_path / "calibrated.keras")
    reloaded = keras.saving.load_model(tmp_path / "calibrated.keras")
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, atol=1e-6)


def test_calibrated_model_exports_to_onnx_with_its_temperature(tmp_path):
    pytest.importorskip("tf2onnx")
    from digitlab.inference.export import export_onnx
    from digitlab.inference.model_files import predict_function_for

    model = models.create("tiny-convnet")
    images = make_digits(20, seed=4).images
    expected = softmax(logits(model, images), 0.3)
    apply_temperature(model, 0.3)
    model.save(tmp_path / "calibrated.keras")
    onnx_path = export_onnx(tmp_path / "calibrated.keras", tmp_path / "calibrated.onnx")
    np.testing.assert_allclose(predict_function_for(onnx_path)(images), expected, atol=1e-5)


@pytest.mark.parametrize("ending", ["separate activation", "no softmax"])
def test_a_model_without_a_final_softmax_dense_is_left_unchanged(ending):
    inputs = keras.Input((28, 28), dtype="uint8")
    features = layers.Flatten()(layers.Rescaling(1 / 255)(inputs))
    if ending == "separate activation":
        outputs = layers.Activation("softmax")(layers.Dense(10)(features))
    else:
        outputs = layers.Dense(10, activation="sigmoid")(features)
    model = keras.Model(inputs, outputs)
    weights = [np.array(value) for value in model.get_weights()]
    assert calibrate(model, make_learnable_digits(50)) is None
    for value, kept in zip(model.get_weights(), weights):
        assert np.array_equal(value, kept)


# --- a trained run --------------------------------------------------------------------------


def with_wrong_labels(dataset: Dataset, share: float, seed: int) -> Dataset:
    """`dataset` with a `share` of its labels replaced by random digits: no model is sure of all."""
    generator = np.random.default_rng(seed)
    labels = dataset.labels.copy()
    changed = generator.random(len(labels)) < share
    labels[changed] = generator.integers(0, 10, changed.sum())
    return Dataset(dataset.images, labels, name=dataset.name)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A short run with label smoothing, which leaves the model under-confident."""
    from digitlab.training.fit import train

    folder = tmp_path_factory.mktemp("calibration")
    data = convert({"train": with_wrong_labels(make_learnable_digits(600), 0.1, seed=0),
                    "test": with_wrong_labels(make_learnable_digits(300, seed=1), 0.1, seed=1)},
                   folder / "noisy.npz")
    config = resolve(overrides={"data": str(data), "model": "tiny-convnet", "epochs": 3, "batch_size": 32,
                                "learning_rate": 0.01, "label_smoothing": 0.1, "validation": 0.25,
                                "runs_dir": str(folder / "runs")})
    return train(config, verbose=0)


def uncalibrated_model(run_folder):
    """The run's model with the weights its checkpoint kept (the best epoch's)."""
    model = models.create("tiny-convnet")
    for variable, value in zip(model.variables, checkpoints.load(checkpoints.path(run_folder, "best")).model_variables):
        variable.assign(value)
    return model


def test_saved_model_gives_the_uncalibrated_logits_over_the_fitted_temperature(run):
    metrics = json.loads((run.path / "metrics.json").read_text())
    temperature = metrics["temperature"]
    assert 0.05 < temperature < 1  # label smoothing left the model under-confident
    images = make_learnable_digits(60, seed=7).images
    expected = softmax(logits(uncalibrated_model(run.path), images), temperature)
    saved = keras.saving.load_model(run.path / "model.keras")
    np.testing.assert_allclose(saved.predict(images, verbose=0), expected, atol=1e-5)


def test_metrics_and_report_hold_the_temperature_and_the_calibration_errors(run):
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["calibration"].startswith("temperature ") and metrics["temperature"] > 0
    for name in ("validation", "test"):
        assert metrics[f"{name}_calibration_error"] < metrics[f"{name}_calibration_error_uncalibrated"], metrics
    assert metrics["test_calibration_error"] == pytest.approx(run.evaluation.calibration_error, abs=1e-6)
    report = (run.path / "report.html").read_text()
    assert "calibration error" in report and "before calibration" in report


def test_calibration_never_changes_a_prediction(run):
    images = np.load(run.config.data)["x_test"]
    uncalibrated = uncalibrated_model(run.path).predict(images, verbose=0)
    assert np.array_equal(uncalibrated.argmax(axis=1), run.model.predict(images, verbose=0).argmax(axis=1))


def test_a_run_resumed_after_its_last_epoch_is_calibrated_once(run, tmp_path):
    from digitlab.training.fit import resume

    folder = tmp_path / run.path.name
    shutil.copytree(run.path, folder)
    (folder / "metrics.json").unlink()  # as if killed after the last checkpoint, before finishing
    resumed = resume(folder, verbose=0)
    first, second = (json.loads((path / "metrics.json").read_text()) for path in (run.path, folder))
    assert second["temperature"] == first["temperature"]
    kernel = resumed.model.get_layer("probabilities").kernel
    best = uncalibrated_model(folder).get_layer("probabilities").kernel
    np.testing.assert_allclose(np.asarray(kernel), np.asarray(best) / first["temperature"], rtol=1e-5)
