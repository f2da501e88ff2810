"""Ensembles: training writes one folder of members, loading averages them, broken files are named."""

import json
import re
import shutil

import numpy as np
import pytest
from matplotlib.figure import Figure

import digitlab
from conftest import make_learnable_digits
from digitlab.data.convert import convert
from digitlab.inference.ensembles import ENSEMBLE_FILENAME, read_ensemble
from digitlab.recipes.config import ConfigError, resolve
from digitlab.training.ensembles import _member_configs, train_ensemble
from digitlab.training.fit import prepare_data


@pytest.fixture(scope="module")
def ensemble(data_npz, tmp_path_factory):
    """One real (tiny) 2-member ensemble, shared by the tests below."""
    return train_ensemble(2, data=data_npz, model="tiny-convnet", epochs=1, batch_size=32,
                          learning_rate=0.01, runs_dir=tmp_path_factory.mktemp("runs"), verbose=0)


def test_training_writes_one_folder_with_the_members_inside(ensemble):
    folder = ensemble.path
    assert re.fullmatch(r"\d{8}-\d{6}-ensemble-tiny-convnet", folder.name)  # a model without a recipe
    for name in (ENSEMBLE_FILENAME, "config.toml", "metrics.json", "report.html", "confusion.png"):
        assert (folder / name).is_file(), name
    member_folders = sorted((folder / "members").iterdir())
    assert member_folders == sorted(run.path for run in ensemble.members) and len(member_folders) == 2
    for member in member_folders:
        assert (member / "model.keras").is_file() and (member / "metrics.json").is_file()

    description = json.loads((folder / ENSEMBLE_FILENAME).read_text())
    assert description["averaging"] == "mean of probabilities" and description["vary"] == "seed"
    assert [entry["seed"] for entry in description["members"]] == [0, 1]
    assert read_ensemble(folder) == [folder / entry["path"] for entry in description["members"]]
    for entry, run in zip(description["members"], ensemble.members):
        assert entry["validation_accuracy"] == run.metrics["validation_accuracy"]
        assert entry["test_accuracy"] == run.metrics["test_accuracy"]
        assert run.config.split_seed == 0  # one validation split for all members

    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["members"] == 2 and metrics["member_test_accuracy"] == [
        run.metrics["test_accuracy"] for run in ensemble.members
    ]
    assert metrics["test_accuracy"] == pytest.approx(ensemble.evaluate().accuracy, abs=1e-6)
    assert "2 members" in repr(ensemble)


def test_loaded_ensemble_averages_its_members(ensemble, data_npz):
    classifier = digitlab.load_model(ensemble.path)
    assert classifier.model is None and len(classifier.members) == 2
    assert "ensemble of 2 models" in repr(classifier)
    images = make_learnable_digits(30, seed=7).images
    members = [digitlab.load_model(run.path).predict_probabilities(images) for run in ensemble.members]
    probabilities = classifier.predict_probabilities(images)
    assert probabilities.dtype == np.float32 and probabilities.shape == (30, 10)
    assert np.allclose(probabilities, np.mean(members, axis=0), rtol=0, atol=1e-6)
    assert np.array_equal(classifier.predict(images), probabilities.argmax(axis=1))
    assert np.allclose(ensemble.predict_probabilities(images), probabilities, atol=1e-6)
    by_file = digitlab.load_model(ensemble.path / ENSEMBLE_FILENAME)
    assert np.allclose(by_file.predict_probabilities(images), probabilities, atol=1e-6)
    from digitlab.inference.model_files import OnnxModel

    fast = digitlab.load_model(ensemble.path, prefer_onnx=True)  # what the commands read: each member's ONNX copy
    assert all(isinstance(member, OnnxModel) for member in fast.members)
    assert np.array_equal(fast.predict(images), classifier.predict(images))
    assert np.allclose(fast.predict_probabilities(images), probabilities, atol=1e-4)


def test_loaded_ensemble_evaluates_and_submits(ensemble, data_npz, tmp_path):
    classifier = digitlab.load_model(ensemble.path, tta=True)
    plain = digitlab.load_model(ensemble.path)
    test_source = f"{data_npz}:test"
    assert plain.evaluate(test_source).accuracy == pytest.approx(ensemble.metrics["test_accuracy"], abs=1e-6)
    assert 0 <= classifier.evaluate(test_source).accuracy <= 1
    test = make_learnable_digits(20, seed=3)
    test_csv = convert({"test": test}, tmp_path / "kaggle", to="csv", kaggle=True) / "test.csv"
    written = plain.submit(test_csv, tmp_path / "submission.csv")
    lines = written.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 21
    assert [int(line.split(",")[1]) for line in lines[1:]] == list(plain.predict(test))
    assert isinstance(plain.plot_confusion_matrix(test_source), Figure)
    assert isinstance(plain.plot_mistakes(test_source, count=4), Figure)


@pytest.mark.parametrize("content, message", [
    ("{not json", r"ensemble\.json: not valid JSON \(.* line 1, column 2\)"),
    ('{"members": []}', r"ensemble\.json: not a digitlab ensemble"),
    ('{"members": [{"model": "tiny-convnet"}]}', r'ensemble\.json: member 1 has no "path"'),
    ('{"members": [{"path": "members/gone"}]}', r"ensemble\.json: member 1, members/gone, is missing"),
])
def test_a_broken_ensemble_file_is_named(tmp_path, content, message):
    (tmp_path / ENSEMBLE_FILENAME).write_text(content)
    with pytest.raises(digitlab.DigitlabError, match=message):
        digitlab.load_model(tmp_path)


def test_a_broken_member_is_named_with_the_ensemble_file(ensemble, tmp_path):
    copy = shutil.copytree(ensemble.path, tmp_path / "copy")
    member = read_ensemble(copy)[1]
    (member / "model.keras").write_bytes(b"not a model")
    with pytest.raises(digitlab.DigitlabError, match=r"copy/ensemble\.json: member 2 cannot be loaded: .*model\.keras"):
        digitlab.load_model(copy)


@pytest.mark.parametrize("arguments, message", [
    ({"members": 1}, r"at least 2 members"),
    ({"members": 3, "vary": "folds"}, r"vary = 'folds' is not one of seed, bagging, models"),
    ({"members": 3, "vary": "models"}, r'vary = "models" needs the models'),
    ({"members": 3, "vary": "models", "models": ["tiny-convnet", "gap-convnet"]}, r"3 members asked for, but 2 models"),
    ({"members": 2, "models": ["tiny-convnet", "gap-convnet"]}, r'models are only used with vary = "models"'),
    ({"members": 2, "epoch": 1}, r"unknown option 'epoch'"),
])
def test_bad_ensemble_options_fail_before_training(tmp_path, arguments, message):
    with pytest.raises(ConfigError, match=message):
        train_ensemble(**arguments, runs_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_an_unknown_member_model_fails_before_training(tmp_path):
    with pytest.raises(digitlab.DigitlabError, match="unknown model 'no-such-net'"):
        train_ensemble(vary="models", models=["tiny-convnet", "no-such-net"], runs_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_members_differ_by_seed_sample_or_model_and_share_the_validation_split(data_npz):
    base = resolve(overrides={"data": str(data_npz), "seed": 5, "validation": 0.2})
    bagged = _member_configs(base, 3, "bagging", None)
    assert [config.seed for config in bagged] == [5, 6, 7]
    assert all(config.bootstrap and config.split_seed == 5 for config in bagged)
    by_model = _member_configs(base, 2, "models", ["tiny-convnet", "gap-convnet"])
    assert [config.model for config in by_model] == ["tiny-convnet", "gap-convnet"]

    plain = prepare_data(base)
    first, second = (prepare_data(config) for config in bagged[:2])
    for splits in (first, second):
        assert np.array_equal(splits.validation.images, plain.validation.images)
        assert len(splits.train) == len(plain.train)
    # A bootstrap sample is drawn with replacement: it repeats some images and leaves others out.
    distinct = {image.tobytes() for image in first.train.images}
    assert len(distinct) < len(first.train)
    assert distinct <= {image.tobytes() for image in plain.train.images}
    assert not np.array_equal(first.train.images, second.train.images)
