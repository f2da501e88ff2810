"""Every run folder carries an ONNX copy of its model, and the everyday commands read it
without starting TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import digitlab
from conftest import make_learnable_digits
from digitlab.inference.model_files import OnnxModel, fastest_model_file, input_adapter, load_model

# Runs the CLI in a fresh Python and reports which heavy modules it imported.
COMMAND_WITHOUT_TENSORFLOW = """
import json, sys
from digitlab.cli import main
sys.argv = ["digitlab", *sys.argv[1:]]
try:
    main()
except SystemExit as exit_:
    code = exit_.code or 0
else:
    code = 0
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
"""


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory):
    """A run just trained on learnable digits: its folder as training leaves it."""
    folder = tmp_path_factory.mktemp("runs")
    data = {"train": make_learnable_digits(300), "test": make_learnable_digits(200, seed=1)}
    from digitlab.data.convert import convert

    source = convert(data, folder / "learnable.npz")
    return digitlab.train(data=source, model="tiny-convnet", epochs=2, batch_size=32, learning_rate=0.01,
                          runs_dir=folder, verbose=0)


def run_without_tensorflow(*args: str | Path, cwd: Path) -> dict:
    environment = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-c", COMMAND_WITHOUT_TENSORFLOW, *map(str, args)], cwd=cwd,
                            capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, result.stdout + result.stderr
    assert not report["tensorflow"] and not report["keras"], f"{args[0]} imported TensorFlow"
    return report


def test_training_leaves_an_onnx_copy_that_agrees_with_keras(fresh_run):
    onnx_file = fresh_run.path / "model.onnx"
    assert fastest_model_file(fresh_run.path) == onnx_file
    assert fastest_model_file(fresh_run.path / "model.keras") == onnx_file
    onnx_model = load_model(onnx_file)
    assert isinstance(onnx_model, OnnxModel)
    assert onnx_model.count_params() == fresh_run.model.count_params()
    images = np.concatenate([make_learnable_digits(200, seed=2).images,
                             np.random.default_rng(0).integers(0, 256, (100, 28, 28), dtype=np.uint8)])
    keras_probabilities = input_adapter(fresh_run.model)(images)
    onnx_probabilities = input_adapter(onnx_model)(images)
    np.testing.assert_array_equal(onnx_probabilities.argmax(axis=1), keras_probabilities.argmax(axis=1))
    np.testing.assert_allclose(onnx_probabilities, keras_probabilities, atol=1e-4)


def test_predict_submit_and_evaluate_run_without_tensorflow_and_agree_with_keras(fresh_run, tmp_path):
    test = make_learnable_digits(120, seed=3)
    keras_labels = input_adapter(fresh_run.model)(test.images).argmax(axis=1)
    assert (keras_labels == test.labels).mean() > 0.5  # it learned something: chance is 0.1
    from digitlab.data.convert import convert

    source = convert({"test": test}, tmp_path / "digits.npz")

    run_without_tensorflow("predict", fresh_run.path, source, "--output", tmp_path / "predictions.csv", cwd=tmp_path)
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    np.testing.assert_array_equal(predictions["label"].to_numpy(), keras_labels)

    run_without_tensorflow("submit", fresh_run.path, source, "--output", tmp_path / "submission.csv", cwd=tmp_path)
    np.testing.assert_array_equal(pd.read_csv(tmp_path / "submission.csv")["Label"].to_numpy(), keras_labels)

    run_without_tensorflow("evaluate", fresh_run.path, "--data", source, "--out", tmp_path / "report", cwd=tmp_path)
    assert (tmp_path / "report" / "report.html").is_file()

    photo = tmp_path / "photo.png"
    Image.fromarray(255 - np.kron(test.images[0], np.ones((6, 6), dtype=np.uint8))).save(photo)
    run_without_tensorflow("predict", fresh_run.path, photo, "--output", tmp_path / "photo.csv", cwd=tmp_path)
    assert pd.read_csv(tmp_path / "photo.csv")["status"].tolist() == ["ok"]


def test_a_stale_onnx_copy_is_passed_over(fresh_run, tmp_path):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(fresh_run.path, folder)
    keras_file = folder / "model.keras"
    later = (folder / "model.onnx").stat().st_mtime + 10
    os.utime(keras_file, (later, later))  # model.keras replaced after its copy was made
    assert fastest_model_file(folder) == keras_file
    assert not isinstance(digitlab.load_model(folder, prefer_onnx=True).model, OnnxModel)
    assert isinstance(digitlab.load_model(fresh_run.path, prefer_onnx=True).model, OnnxModel)


def test_a_run_without_the_converter_keeps_model_keras_and_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("digitlab.inference.export._EXPORT_PACKAGES", ("tf2onnx", "onnx_not_installed_here"))
    run = digitlab.train(data=(make_learnable_digits(100).images, make_learnable_digits(100).labels),
                         model="tiny-convnet", epochs=1, batch_size=32, validation=0, runs_dir=tmp_path, verbose=0)
    assert (run.path / "model.keras").is_file() and not (run.path / "model.onnx").exists()
    assert "no model.onnx" in capsys.readouterr().err
    assert fastest_model_file(run.path) == run.path
