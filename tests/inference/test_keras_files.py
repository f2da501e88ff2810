"""The model.keras files digitlab writes open with plain `keras.saving.load_model` in a Python that
never imported digitlab, and predict the same labels; old files holding digitlab's own layer and
schedule still load through digitlab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

# Keras after digitlab, which picks the backend.
import keras
import numpy as np
import pytest

import digitlab
from conftest import make_learnable_digits
from digitlab import models
from digitlab.compute.backend import dtype_policy
from digitlab.inference.keras_models import save_model
from digitlab.inference.model_files import input_adapter, load_model
from digitlab.models.layers import FusedBatchNormalization
from digitlab.models.one_cycle import OneCycle

PLAIN_KERAS = textwrap.dedent("""
    import json, sys
    import keras, numpy as np

    images = np.load(sys.argv[1])
    labels = {}
    for path in sys.argv[2:]:
        model = keras.saving.load_model(path)
        labels[path] = {"labels": model.predict(images, verbose=0).argmax(axis=1).tolist(),
                        "layers": sorted({type(layer).__name__ for layer in model.layers}),
                        "dtypes": sorted({layer.dtype_policy.name for layer in model.layers}),
                        "compiled": model.compiled}
    assert "digitlab" not in sys.modules, "plain Keras imported digitlab"
    print(json.dumps(labels))
""")


def fresh_python(script: str, *arguments) -> dict:
    """The JSON that `script` prints last, run in a new Python with `arguments`."""
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, arguments)], capture_output=True, text=True, timeout=300,
        env=os.environ | {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def plain_keras(images: np.ndarray, paths, folder) -> dict:
    """What a fresh Python that imports only Keras and NumPy reads in each model file."""
    np.save(folder / "images.npy", images)
    return fresh_python(PLAIN_KERAS, folder / "images.npy", *paths)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return make_learnable_digits(40, seed=7).images


@pytest.fixture(scope="module")
def runs(data_npz, tmp_path_factory):
    """Two short runs of fast-convnet (batch norm, one-cycle schedule): in float32 and in mixed_bfloat16."""
    folder = tmp_path_factory.mktemp("runs")
    settings = {"data": data_npz, "epochs": 1, "batch_size": 32, "runs_dir": folder, "verbose": 0}
    return {"float32": digitlab.train("fast", **settings),
            "mixed_bfloat16": digitlab.train("fast", precision="mixed_bfloat16", **settings)}


@pytest.fixture(scope="module")
def read_plainly(runs, images, tmp_path_factory):
    paths = [run.path / "model.keras" for run in runs.values()]
    return plain_keras(images, paths, tmp_path_factory.mktemp("plain"))


@pytest.mark.slow
def test_a_trained_run_with_batch_norm_and_one_cycle_opens_in_plain_keras_with_the_same_labels(
    runs, images, read_plainly
):
    run = runs["float32"]
    assert run.config.model == "fast-convnet" and run.config.schedule == "one-cycle"
    assert any(isinstance(layer, FusedBatchNormalization) for layer in run.model.layers)
    read = read_plainly[str(run.path / "model.keras")]
    assert "BatchNormalization" in read["layers"] and not read["compiled"]
    assert read["labels"] == digitlab.load_model(run.path).predict(images).tolist()
    assert read["labels"] == input_adapter(run.model)(images).argmax(axis=1).tolist()


@pytest.mark.slow
def test_a_mixed_precision_run_is_saved_as_float32_keras_layers(runs, images, read_plainly):
    run = runs["mixed_bfloat16"]
    read = read_plainly[str(run.path / "model.keras")]
    assert read["dtypes"] == ["float32"]
    assert read["labels"] == input_adapter(run.model)(images).argmax(axis=1).tolist()


@pytest.mark.slow
def test_the_saved_file_names_neither_digitlab_nor_an_optimizer(runs):
    with zipfile.ZipFile(runs["float32"].path / "model.keras") as archive:
        config = archive.read("config.json").decode()
        names = archive.namelist()
    assert "digitlab" not in config and "OneCycle" not in config
    assert not json.loads(config).get("compile_config") and not any("optimizer" in name for name in names)


@pytest.mark.slow
def test_a_model_with_digitlabs_locally_connected_layer_loads_in_keras_once_digitlab_models_is_imported(
    tmp_path, images
):
    model = models.create("locally-connected")
    save_model(model, tmp_path / "local.keras")
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent("""
        import json, sys
        import keras, numpy as np

        try:
            keras.saving.load_model(sys.argv[2])
        except Exception as error:
            assert "LocallyConnected2D" in str(error), error
        else:
            raise AssertionError("loaded before digitlab's layer was registered")
        import digitlab  # the package alone leaves TensorFlow unloaded and registers nothing
        assert keras.saving.get_registered_object("digitlab>LocallyConnected2D") is None
        import digitlab.models
        model = keras.saving.load_model(sys.argv[2])
        print(json.dumps(model.predict(np.load(sys.argv[1]), verbose=0).argmax(axis=1).tolist()))
    """)
    labels = fresh_python(script, tmp_path / "images.npy", tmp_path / "local.keras")
    assert labels == input_adapter(model)(images).argmax(axis=1).tolist()


def test_old_files_with_fused_batch_norm_and_a_one_cycle_optimizer_still_load_through_digitlab(tmp_path, images):
    model = models.create("fast-convnet")
    model.compile(optimizer=keras.optimizers.Adam(OneCycle(0.01, 100)), loss="sparse_categorical_crossentropy")
    model.save(tmp_path / "old.keras")  # as runs were saved before
    with zipfile.ZipFile(tmp_path / "old.keras") as archive:
        config = archive.read("config.json").decode()
    assert "digitlab>FusedBatchNormalization" in config and "digitlab>OneCycle" in config
    loaded = load_model(tmp_path / "old.keras")
    assert any(isinstance(layer, FusedBatchNormalization) for layer in loaded.layers)
    np.testing.assert_allclose(input_adapter(loaded)(images), input_adapter(model)(images), atol=1e-6)


def test_a_mixed_precision_model_saves_with_its_weights_in_float32_layers(tmp_path, images):
    with dtype_policy("mixed_bfloat16"):
        model = models.create("fast-convnet")
    save_model(model, tmp_path / "mixed.keras")
    loaded = load_model(tmp_path / "mixed.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    assert loaded.inputs[0].dtype == "uint8"
    for saved, kept in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(saved), keras.ops.convert_to_numpy(kept))
