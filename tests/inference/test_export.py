"""Export: every zoo model exports to ONNX, ONNX Runtime agrees with Keras on the labels and on the
probabilities to within 1e-4, and .onnx files serve predictions through digitlab.inference.model_files with
the same error quality as Keras files; TensorFlow Lite, SavedModel and .h5 exports agree with Keras too,
run by TensorFlow Lite's interpreter, TensorFlow and Keras."""

from __future__ import annotations

import os
import warnings
import zipfile

# Keras and ONNX after digitlab, which picks the backend.
import keras
import numpy as np
import onnx
import pytest
from keras import layers
from onnx import TensorProto, helper

from conftest import make_digits
from digitlab import models
from digitlab.errors import DigitlabError, OutputExistsError
from digitlab.inference.export import (
    AGREEMENT_TOLERANCE,
    EXPORT_FORMATS,
    ExportError,
    default_export_path,
    default_onnx_path,
    export_model,
    export_onnx,
)
from digitlab.inference.model_files import (
    ModelError,
    OnnxModel,
    fastest_model_file,
    input_adapter,
    load_model,
    predict_function_for,
)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return make_digits(37, seed=5).images


def with_random_weights(model: keras.Model, seed: int = 0) -> keras.Model:
    """`model` with every weight moved off its initial value, batch-norm statistics included,
    so that a conversion that mishandles any weight shows."""
    generator = np.random.default_rng(seed)
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        noise = generator.normal(0, 0.05, size=value.shape).astype(value.dtype)
        if "moving_variance" in variable.path:
            value = np.abs(value + 10 * noise) + 0.1
        else:
            value = value + noise
        variable.assign(value)
    return model


def save(model: keras.Model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras calls .h5 "legacy" when saving one
        model.save(path)
    return path


def assert_agree(onnx_probabilities: np.ndarray, keras_probabilities: np.ndarray) -> None:
    assert onnx_probabilities.dtype == np.float32
    assert np.array_equal(onnx_probabilities.argmax(axis=1), keras_probabilities.argmax(axis=1))
    np.testing.assert_allclose(onnx_probabilities, keras_probabilities, atol=AGREEMENT_TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", models.names())
def test_every_zoo_model_exports_and_agrees_with_keras(tmp_path, images, name):
    model = with_random_weights(models.create(name))
    keras_path = save(model, tmp_path / f"{name}.keras")
    onnx_path = export_onnx(keras_path, tmp_path / f"{name}.onnx")
    assert onnx_path == tmp_path / f"{name}.onnx" and sorted(tmp_path.iterdir()) == [keras_path, onnx_path]

    onnx_model = load_model(onnx_path)
    assert isinstance(onnx_model, OnnxModel)
    assert onnx_model.name == model.name and onnx_model.count_params() == model.count_params()
    (pixels,), (probabilities,) = onnx_model.session.get_inputs(), onnx_model.session.get_outputs()
    assert (pixels.name, pixels.type, pixels.shape) == ("pixels", "tensor(uint8)", ["N", 28, 28])
    assert (probabilities.name, probabilities.shape) == ("probabilities", ["N", 10])
    # Batches of 7 feed the dynamic batch dimension several sizes, the last one short.
    assert_agree(input_adapter(onnx_model, batch_size=7)(images), input_adapter(model)(images))
    # The uint8 images go to the ONNX session as they are, exactly as to the Keras model.
    raw = onnx_model.session.run(None, {"pixels": images[:3]})[0]
    assert_agree(raw, keras.ops.convert_to_numpy(model(images[:3], training=False)))


@pytest.mark.parametrize("input_shape", [(28, 28, 1), (784,)])
def test_float_input_model_exports_taking_uint8_images(tmp_path, images, input_shape):
    """A notebook-style model (floats in [0, 1]) gets input_adapter's reshaping and scaling built in."""
    body = [layers.Conv2D(4, 3, activation="relu"), layers.Flatten()] if len(input_shape) == 3 else []
    model = keras.Sequential([keras.Input(input_shape), *body, layers.Dense(10)])  # logits
    model = with_random_weights(model)
    keras_path = save(model, tmp_path / "notebook.h5")
    onnx_model = load_model(export_onnx(keras_path, tmp_path / "notebook.onnx"))
    assert onnx_model.session.get_inputs()[0].type == "tensor(uint8)"
    assert_agree(input_adapter(onnx_model)(images), input_adapter(load_model(keras_path))(images))


def test_onnx_model_predicts_uint8_images_through_modelio(tmp_path, images):
    model = with_random_weights(models.create("tiny-convnet"))
    run = tmp_path / "run"
    run.mkdir()
    export_onnx(save(model, run / "model.keras"), run / "model.onnx")
    expected = input_adapter(model)(images)

    predict = predict_function_for(run / "model.onnx")
    assert_agree(predict(images), expected)
    assert predict(images[:1]).shape == (1, 10)
    assert predict(images[:0]).shape == (0, 10)
    with pytest.raises(ValueError, match="uint8"):
        predict(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        predict(images.reshape(-1, 784))

    assert default_onnx_path(run) == default_onnx_path(run / "model.keras") == run / "model.onnx"
    # A run folder gives model.keras to load_model, and the fresh model.onnx to serve.
    assert not isinstance(load_model(run), OnnxModel)
    assert fastest_model_file(run) == run / "model.onnx"
    os.utime(run / "model.onnx", (1, 1))  # an export older than the model is stale
    assert fastest_model_file(run) == run / "model.keras"
    assert fastest_model_file(run / "model.keras") == run / "model.keras"
    (run / "model.keras").unlink()
    assert isinstance(load_model(run), OnnxModel)
    assert_agree(predict_function_for(run)(images), expected)


def test_existing_output_is_kept_unless_forced(tmp_path, images):
    keras_path = save(models.create("tiny-convnet"), tmp_path / "tiny.keras")
    output = tmp_path / "tiny.onnx"
    output.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        export_onnx(keras_path, output)
    assert output.read_bytes() == b"keep me"
    export_onnx(keras_path, output, force=True, check_data=images)
    assert isinstance(load_model(output), OnnxModel)
    with pytest.raises(ExportError, match=r"must end in \.onnx"):
        export_onnx(keras_path, tmp_path / "tiny.bin")
    with pytest.raises(ModelError, match="ONNX model already"):
        export_onnx(output, tmp_path / "again.onnx")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tiny.keras", "tiny.onnx"]


def test_missing_converter_is_named_with_the_install_command(tmp_path, monkeypatch):
    keras_path = save(models.create("tiny-convnet"), tmp_path / "tiny.keras")
    monkeypatch.setattr("digitlab.inference.export._EXPORT_PACKAGES", ("tf2onnx", "onnx_not_installed_here"))
    with pytest.raises(ExportError, match=r"needs onnx_not_installed_here, .* pip install onnx_not_installed_here$"):
        export_onnx(keras_path, tmp_path / "tiny.onnx")


def test_cli_predict_and_submit_take_an_onnx_model(tmp_path, run_cli):
    from digitlab.data.formats import kaggle_csv

    model = with_random_weights(models.create("tiny-convnet"))
    onnx_path = export_onnx(save(model, tmp_path / "tiny.keras"), tmp_path / "tiny.onnx")
    test = make_digits(12, seed=9, labelled=False)
    kaggle_csv.write(tmp_path / "test.csv", test)
    result = run_cli("submit", onnx_path, tmp_path / "test.csv", "-o", tmp_path / "submission.csv")
    assert result.code == 0, result.err
    expected = input_adapter(model)(test.images).argmax(axis=1)
    rows = (tmp_path / "submission.csv").read_text().splitlines()
    assert rows[1:] == [f"{index},{label}" for index, label in enumerate(expected, start=1)]


@pytest.mark.parametrize("export_format", list(EXPORT_FORMATS))
def test_disagreement_is_an_error_and_writes_nothing(tmp_path, monkeypatch, export_format):
    keras_path = save(models.create("tiny-convnet"), tmp_path / "tiny.keras")
    monkeypatch.setattr("digitlab.inference.export.AGREEMENT_TOLERANCE", -1.0)  # no export can meet it
    with pytest.raises(ExportError, match="does not compute what the Keras model does") as raised:
        export_model(keras_path, default_export_path(keras_path, export_format), export_format)
    assert isinstance(raised.value, DigitlabError) and "nothing was written" in str(raised.value)
    assert [path.name for path in tmp_path.iterdir()] == ["tiny.keras"]  # no file, no temporary


def run_tflite(path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice of its successor
        interpreter = tf.lite.Interpreter(model_path=str(path))
    (detail,) = interpreter.get_input_details()
    assert detail["dtype"] == np.uint8 and list(detail["shape_signature"]) == [-1, 28, 28]
    interpreter.resize_tensor_input(detail["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def run_saved_model(path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    saved = tf.saved_model.load(str(path))  # kept while serve runs: it owns the weights
    return saved.serve(images).numpy()


def run_h5(path, images: np.ndarray) -> np.ndarray:
    return input_adapter(load_model(path))(images)


RUNTIMES = {"tflite": run_tflite, "savedmodel": run_saved_model, "h5": run_h5}


@pytest.mark.parametrize("export_format", list(RUNTIMES))
def test_each_format_exports_what_its_runtime_runs_as_keras_does(tmp_path, images, export_format):
    model = with_random_weights(models.create("fast-convnet"))  # batch norm: the fused layer exports as Keras'
    keras_path = save(model, tmp_path / "fast.keras")
    written = export_model(keras_path, default_export_path(keras_path, export_format), export_format)
    assert written == default_export_path(keras_path, export_format)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["fast.keras", written.name])
    assert_agree(RUNTIMES[export_format](written, images), input_adapter(model)(images))


@pytest.mark.parametrize("export_format", list(RUNTIMES))
def test_each_format_keeps_an_existing_output_unless_forced(tmp_path, images, export_format):
    run = tmp_path / "run"
    run.mkdir()
    save(models.create("tiny-convnet"), run / "model.keras")
    output = default_export_path(run, export_format)
    assert output.name == {"tflite": "model.tflite", "savedmodel": "saved_model", "h5": "model.h5"}[export_format]
    kept = output / "keep.txt" if export_format == "savedmodel" else output
    kept.parent.mkdir(exist_ok=True)
    kept.write_text("keep me")
    with pytest.raises(OutputExistsError):
        export_model(run, output, export_format)
    assert kept.read_text() == "keep me"
    export_model(run, output, export_format, force=True, check_data=images)
    if export_format == "savedmodel":
        assert not kept.exists() and (output / "saved_model.pb").is_file()
    else:
        assert output.read_bytes() != b"keep me"
    assert sorted(path.name for path in run.iterdir()) == sorted(["model.keras", output.name])


def test_export_names_its_formats_and_their_suffixes(tmp_path):
    keras_path = save(models.create("tiny-convnet"), tmp_path / "tiny.keras")
    with pytest.raises(ExportError, match=r"unknown export format 'coreml'; the formats are onnx, tflite, savedmodel"):
        export_model(keras_path, tmp_path / "tiny.mlmodel", "coreml")
    with pytest.raises(ExportError, match=r"tiny\.bin: the name of the TensorFlow Lite export must end in \.tflite"):
        export_model(keras_path, tmp_path / "tiny.bin", "tflite")
    with pytest.raises(ExportError, match=r"must end in \.h5 or \.hdf5"):
        export_model(keras_path, tmp_path / "tiny.keras2", "h5")
    assert default_export_path(keras_path, "savedmodel") == tmp_path / "saved_model"
    assert default_export_path(tmp_path / "cnn.h5", "TFLite") == tmp_path / "cnn.tflite"
    assert [path.name for path in tmp_path.iterdir()] == ["tiny.keras"]


def test_cli_exports_a_run_folder_as_a_saved_model(tmp_path, run_cli, images):
    run = tmp_path / "run"
    run.mkdir()
    model = with_random_weights(models.create("tiny-convnet"))
    save(model, run / "model.keras")
    result = run_cli("export", run, "--format", "savedmodel")
    assert result.code == 0, result.err
    assert "saved_model" in result.out and "(TensorFlow and Keras agree)" in result.out
    assert_agree(run_saved_model(run / "saved_model", images), input_adapter(model)(images))
    refused = run_cli("export", run, "--format", "savedmodel")
    assert refused.code == 1 and "--force" in refused.err
    unknown = run_cli("export", run, "--format", "pickle")
    assert unknown.code == 1 and "unknown export format 'pickle'" in unknown.err


def onnx_model(graph: onnx.GraphProto, ir_version: int = 8) -> onnx.ModelProto:
    """A model of `graph` with opset 15; IR version 8 is the one opset 15 came with."""
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=ir_version)


def onnx_classifier(path, input_shape, input_type=TensorProto.FLOAT, classes=10, inputs=1):
    """Write a one-layer ONNX classifier: Flatten > MatMul > Softmax (a Cast first for integer input)."""
    features = int(np.prod([size for size in input_shape[1:] if isinstance(size, int)]))
    weights = np.random.default_rng(0).normal(0, 0.01, (features, classes)).astype(np.float32)
    nodes, first = [], "x0"
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["x0"], ["floats"], to=TensorProto.FLOAT))
        first = "floats"
    nodes += [
        helper.make_node("Flatten", [first], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weights"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["y"], axis=1),
    ]
    graph_inputs = [helper.make_tensor_value_info(f"x{index}", input_type, input_shape) for index in range(inputs)]
    graph = helper.make_graph(
        nodes,
        "classifier",
        graph_inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [input_shape[0], classes])],
        [helper.make_tensor("weights", TensorProto.FLOAT, weights.shape, weights.ravel())],
    )
    onnx.save(onnx_model(graph), str(path))
    return path, weights


def write_bad_onnx(kind: str, folder):
    """An .onnx path that must be refused, made in `folder`."""
    path = folder / f"{kind}.onnx"
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(b"\xff" * 8 + np.random.default_rng(0).bytes(500))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", "{}")
    elif kind == "input-32x32x3":
        onnx_classifier(path, ["N", 32, 32, 3])
    elif kind == "five-classes":
        onnx_classifier(path, ["N", 28, 28], TensorProto.UINT8, classes=5)
    elif kind == "two-inputs":
        onnx_classifier(path, ["N", 784], inputs=2)
    elif kind == "future-ir-version":
        onnx_classifier(path, ["N", 784])
        model = onnx.load(str(path))
        model.ir_version = 99
        onnx.save(model, str(path))
    elif kind == "string-input":
        uniform = helper.make_tensor("uniform", TensorProto.FLOAT, [1, 10], [0.1] * 10)
        graph = helper.make_graph(
            [helper.make_node("Constant", [], ["y"], value=uniform)],
            "strings",
            [helper.make_tensor_value_info("x", TensorProto.STRING, ["N", 28, 28])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        )
        onnx.save(onnx_model(graph), str(path))
    else:
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "no such file"),
        ("empty", "the file is empty"),
        ("random", "not an ONNX model"),
        ("zip", "rename it to end in .keras"),
        ("input-32x32x3", "(N, 32, 32, 3)"),
        ("five-classes", "(N, 5)"),
        ("two-inputs", "2 inputs"),
        ("string-input", "tensor(string) input"),
        ("future-ir-version", "cannot load this model: Unsupported model IR version: 99"),
    ],
)
def test_bad_onnx_files_are_refused_naming_the_file(tmp_path, kind, words):
    path = write_bad_onnx(kind, tmp_path)
    with pytest.raises(ModelError) as raised:
        load_model(path)
    message = str(raised.value)
    assert path.name in message and words in message
    assert "\n" not in message


def test_foreign_onnx_models_get_scaled_floats_and_fixed_batches(tmp_path, images):
    """ONNX files from elsewhere: float (N, 784) input gets pixels / 255, and a fixed batch size
    of 4 gets images four at a time, the last batch padded."""
    expected = None
    for input_shape in (["batch", 784], [4, 784]):
        path, weights = onnx_classifier(tmp_path / f"{input_shape[0]}.onnx", input_shape)
        scores = (images.reshape(-1, 784).astype(np.float32) / 255) @ weights
        expected = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
        model = load_model(path)
        assert model.name == path.stem
        assert model.count_params() == weights.size  # counted in the file: it records no count
        np.testing.assert_allclose(predict_function_for(path, batch_size=5)(images), expected, atol=1e-6)
    assert expected is not None


@pytest.mark.mnist
def test_quickly_trained_model_agrees_on_all_mnist_test_images(tmp_path, mnist_folder, monkeypatch):
    import digitlab

    monkeypatch.setenv("DIGITLAB_DATA", str(mnist_folder))
    run = digitlab.train("tiny-convnet", epochs=1, train_limit=5000, runs_dir=tmp_path, offline=True, verbose=0)
    test = digitlab.load("mnist:test", offline=True)
    onnx_path = run.path / "model.onnx"  # every run gets its ONNX copy at the end of training
    keras_probabilities = input_adapter(run.model)(test.images)
    onnx_probabilities = predict_function_for(onnx_path)(test.images)
    assert_agree(onnx_probabilities, keras_probabilities)
    assert (keras_probabilities.argmax(axis=1) == test.labels).mean() > 0.5  # it learned: chance is 0.1
