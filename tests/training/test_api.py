"""The library API as a notebook uses it: load, look, train, evaluate, predict, submit, plot."""

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

import digitlab
from conftest import make_learnable_digits
from digitlab.data.convert import convert
from digitlab.recipes.config import ConfigError


@pytest.fixture(scope="module")
def run(data_npz, tmp_path_factory):
    """One real (short) training run through digitlab.train, shared by the tests below."""
    runs = tmp_path_factory.mktemp("runs")
    return digitlab.train(data=data_npz, model="tiny-convnet", epochs=1, batch_size=32,
                          learning_rate=0.01, runs_dir=runs, verbose=0)


def test_importing_digitlab_leaves_keras_and_matplotlib_unloaded():
    code = ("import sys, digitlab; digitlab.load; digitlab.train; "
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'keras loaded'; "
            "import digitlab.training.fit; assert callable(digitlab.train), digitlab.train")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_models_are_reachable_from_the_package():
    assert "tiny-convnet" in digitlab.models.names()
    assert digitlab.models.create("tiny-convnet").count_params() == 1815


def test_load_split_and_pictures(data_npz):
    dataset = digitlab.load(data_npz)
    assert isinstance(dataset, digitlab.Dataset) and len(dataset) == 200
    train, validation = dataset.split(0.2, seed=0)
    assert (len(train), len(validation)) == (160, 40)
    assert list(validation.class_counts()) == [4] * 10
    assert isinstance(train.show_samples(rows=2, columns=5), Figure)
    assert isinstance(train.plot_class_distribution(), Figure)
    assert isinstance(train.show(3), Figure)
    unlabelled = digitlab.Dataset(dataset.images[:5])
    with pytest.raises(ValueError, match="no labels"):
        unlabelled.plot_class_distribution()


def test_train_options_reach_the_config(monkeypatch, data_npz, tmp_path):
    captured = {}
    monkeypatch.setattr("digitlab.training.api.train_config",
                        lambda config, **settings: captured.setdefault("config", config))
    digitlab.train(data=data_npz, epochs=2, augmentation={"rotation": 10, "zoom": 0.1},
                   runs_dir=tmp_path)
    config = captured["config"]
    assert (config.recipe, config.model) == ("fast", "fast-convnet")  # the CLI's default
    assert (config.data, config.epochs, config.runs_dir) == (str(data_npz), 2, str(tmp_path))
    assert (config.augmentation.rotation, config.augmentation.zoom) == (10.0, 0.1)


def test_a_model_without_a_recipe_trains_with_the_defaults_and_says_so(monkeypatch, data_npz, tmp_path, capsys):
    captured = {}
    monkeypatch.setattr("digitlab.training.api.train_config",
                        lambda config, **settings: captured.setdefault("config", config))
    digitlab.train(data=data_npz, model="Gap-ConvNet", runs_dir=tmp_path)
    config = captured["config"]
    assert (config.recipe, config.model) == ("gap-convnet", "gap-convnet")  # the run is named after the model
    assert (config.optimizer, config.learning_rate, config.schedule) == ("adam", 0.001, "constant")
    assert (config.label_smoothing, config.steps_per_execution) == (0.0, 1)  # none of fast's settings
    assert "note: no recipe given, so gap-convnet trains with the default settings (adam at 0.001" in \
        capsys.readouterr().err
    captured.clear()
    digitlab.train("fast", data=data_npz, model="gap-convnet", runs_dir=tmp_path, verbose=0)
    assert (captured["config"].recipe, captured["config"].schedule) == ("fast", "one-cycle")  # a recipe is kept
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("options, message", [
    ({"epoch": 1}, r"unknown option 'epoch' \(did you mean 'epochs'\?\)"),
    ({"augmentation": {"shear": 0.2}}, r"unknown augmentation key 'shear'"),
    ({"optimizer": "adagrad"}, r"optimizer = 'adagrad' is not one of"),
    ({"data": digitlab.Dataset(np.zeros((1, 28, 28), np.uint8))}, r"data has no labels: give \(images, labels\)"),
    ({"validation": np.zeros((3, 784), np.uint8)}, r"validation has no labels"),
])
def test_bad_train_options_are_refused_by_name(options, message):
    with pytest.raises(ConfigError, match=message):
        digitlab.train(**options)


def test_train_returns_a_run_with_its_folder(run):
    assert isinstance(run, digitlab.Run)
    assert len(run.history) == 1 and "val_accuracy" in run.history
    assert (run.path / "model.keras").is_file() and (run.path / "report.html").is_file()
    assert run.config.model == "tiny-convnet" and run.config.recipe == "tiny-convnet"  # no recipe: named after it
    assert run.metrics["test_accuracy"] == pytest.approx(run.evaluate().accuracy, abs=1e-6)


def test_evaluate_takes_a_source_or_a_dataset(run, data_npz):
    from digitlab.evaluation.metrics import Evaluation

    own = run.evaluate()
    assert isinstance(own, Evaluation) and len(own) == 60  # the test part of the npz
    by_source = run.evaluate(f"{data_npz}:test")
    by_dataset = run.evaluate(digitlab.load(data_npz, part="test"))
    assert by_source.accuracy == by_dataset.accuracy == pytest.approx(own.accuracy, abs=1e-6)


def test_predict_takes_arrays_one_image_paths_and_sources(run, tmp_path):
    images = make_learnable_digits(12, seed=5).images
    predicted = run.predict(images)
    assert predicted.shape == (12,) and predicted.dtype == np.int64
    assert set(predicted) <= set(range(10))
    probabilities = run.predict_probabilities(images)
    assert probabilities.shape == (12, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(probabilities.argmax(axis=1), predicted)
    assert np.array_equal(run.predict(images[3]), predicted[3:4])

    paths = []
    for index in range(3):
        path = tmp_path / f"digit-{index}.png"
        Image.fromarray(images[index]).save(path)
        paths.append(path)
    assert np.array_equal(run.predict([str(path) for path in paths]), predicted[:3])
    assert np.array_equal(run.predict(paths[1]), predicted[1:2])  # one image file is a source
    assert np.array_equal(run.predict(digitlab.Dataset(images)), predicted)


def test_predict_refuses_images_it_cannot_use(run):
    with pytest.raises(ValueError, match=r"floats in \[0, 1\].*found float32 .* values -1 to 1"):
        run.predict(np.linspace(-1, 1, 2 * 784, dtype=np.float32).reshape(2, 28, 28))
    with pytest.raises(ValueError, match=r"shape \(N, 784\), \(N, 28, 28\) or \(N, 28, 28, 1\)"):
        run.predict(np.zeros((2, 32, 32), dtype=np.uint8))


def test_submit_writes_kaggle_format(run, tmp_path):
    test = make_learnable_digits(30, seed=2)
    test_csv = convert({"test": test}, tmp_path / "kaggle", to="csv", kaggle=True) / "test.csv"
    written = run.submit(test_csv, tmp_path / "submission.csv")
    lines = written.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 31
    assert [int(line.split(",")[1]) for line in lines[1:]] == list(run.predict(test))
    with pytest.raises(digitlab.DigitlabError, match="exists"):
        run.submit(test_csv, written)
    assert run.submit(test_csv, written, force=True) == written


def test_plots_are_figures(run, data_npz):
    assert isinstance(run.plot_curves(), Figure)
    assert isinstance(run.plot_confusion_matrix(), Figure)
    assert isinstance(run.plot_confusion_matrix(f"{data_npz}:test", normalize=False), Figure)
    assert isinstance(run.plot_mistakes(), Figure)
    assert isinstance(run.plot_mistakes(digitlab.load(data_npz, part="test"), count=4), Figure)


def test_predictions_are_shown_with_their_digit_and_wrong_ones_marked(run, data_npz):
    test = digitlab.load(data_npz, part="test")
    figure = run.plot_predictions(test, count=12, seed=3)
    titled = [axis for axis in figure.axes if axis.get_title()]
    assert len(titled) == 12
    chosen = np.sort(np.random.default_rng(3).choice(len(test), 12, replace=False))
    predicted = run.predict(test.images[chosen])
    for axis, digit, truth in zip(titled, predicted, test.labels[chosen]):
        title = axis.get_title()
        assert title.startswith(f"predicted {digit} (")
        assert (f"true {truth}" in title) == (digit != truth)
        assert (axis.title.get_color() == "tab:red") == (digit != truth)
    unlabelled = run.plot_predictions(test.images[:3])
    assert [axis.get_title().endswith("%)") for axis in unlabelled.axes if axis.get_title()] == [True] * 3
    pair = run.plot_predictions((test.images[:4] / 255.0, test.labels[:4]), count=4)
    assert len([axis for axis in pair.axes if axis.get_title()]) == 4


def test_loaded_model_predicts_as_the_run(run, data_npz):
    classifier = digitlab.load_model(run.path)
    assert isinstance(classifier, digitlab.Classifier)
    assert classifier.path == run.path and "weights" in repr(classifier)
    images = make_learnable_digits(40, seed=4).images
    assert np.array_equal(classifier.predict(images), run.predict(images))
    assert np.allclose(classifier.predict_probabilities(images), run.predict_probabilities(images))
    test_source = f"{data_npz}:test"
    assert classifier.evaluate(test_source).accuracy == pytest.approx(run.evaluate().accuracy, abs=1e-6)
    assert isinstance(classifier.plot_confusion_matrix(test_source), Figure)
    assert isinstance(classifier.plot_mistakes(test_source), Figure)
