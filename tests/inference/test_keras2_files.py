"""Sequential models saved by Keras 2.2 (`model.save("model.h5")`), which Keras 3's own loader
misreads, load through digitlab and predict what the same weights predict in Keras 3."""

from __future__ import annotations

import json
import warnings

import h5py

# Keras after digitlab, which picks the backend.
import keras
import numpy as np
import pytest

import digitlab
from conftest import make_digits
from digitlab.inference.model_files import ModelError, input_adapter, load_model

GLOROT_UNIFORM = {"class_name": "VarianceScaling",
                  "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None}}
HE_NORMAL = {"class_name": "VarianceScaling",  # Keras 2.2's "normal" was a truncated normal
             "config": {"scale": 2.0, "mode": "fan_in", "distribution": "normal", "seed": None}}
ZEROS = {"class_name": "Zeros", "config": {}}


def weighted(name: str, initializer: dict, **options) -> dict:
    return {"name": name, "trainable": True, **options, "use_bias": True, "kernel_initializer": initializer,
            "bias_initializer": ZEROS, "kernel_regularizer": None, "bias_regularizer": None,
            "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None}


def keras2_layers() -> list[dict]:
    """The layer configs Keras 2.2.4 wrote for Conv2D 4 3x3 > MaxPool 2x2 > Flatten > Dense 10 softmax."""
    convolution = weighted("conv2d_1", GLOROT_UNIFORM, filters=4, kernel_size=[3, 3], strides=[1, 1],
                           padding="valid", data_format="channels_last", dilation_rate=[1, 1], activation="relu")
    convolution = {"name": "conv2d_1", "trainable": True, "batch_input_shape": [None, 28, 28, 1],
                   "dtype": "float32"} | convolution
    return [
        {"class_name": "Conv2D", "config": convolution},
        {"class_name": "MaxPooling2D", "config": {"name": "max_pooling2d_1", "trainable": True, "pool_size": [2, 2],
                                                  "padding": "valid", "strides": [2, 2],
                                                  "data_format": "channels_last"}},
        {"class_name": "Flatten", "config": {"name": "flatten_1", "trainable": True, "data_format": "channels_last"}},
        {"class_name": "Dense", "config": weighted("dense_1", HE_NORMAL, units=10, activation="softmax")},
    ]


def keras2_weights(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    generator = np.random.default_rng(seed)
    return {
        "conv2d_1": {"kernel:0": generator.normal(0, 0.3, (3, 3, 1, 4)), "bias:0": generator.normal(0, 0.1, 4)},
        "max_pooling2d_1": {},
        "flatten_1": {},
        "dense_1": {"kernel:0": generator.normal(0, 0.05, (13 * 13 * 4, 10)), "bias:0": generator.normal(0, 0.1, 10)},
    }


def write_keras2_h5(path, layers: list[dict], weights: dict[str, dict[str, np.ndarray]], listed: bool = True):
    """An .h5 file laid out as Keras 2.2.4's model.save wrote it. `listed`: the Sequential config
    is the list of layers, as 2.2.4 wrote it; else {"name", "layers"}, as later versions did."""
    config = layers if listed else {"name": "sequential_1", "layers": layers}
    with h5py.File(path, "w") as file:
        file.attrs["keras_version"] = b"2.2.4"
        file.attrs["backend"] = b"tensorflow"
        file.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": config}).encode()
        group = file.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name in weights]
        group.attrs["keras_version"] = b"2.2.4"
        group.attrs["backend"] = b"tensorflow"
        for layer_name, values in weights.items():
            layer_group = group.create_group(layer_name)
            layer_group.attrs["weight_names"] = [f"{layer_name}/{name}".encode() for name in values]
            for name, value in values.items():
                layer_group.create_dataset(f"{layer_name}/{name}", data=value.astype(np.float32))
    return path


def same_weights_in_keras3(weights: dict[str, dict[str, np.ndarray]]) -> keras.Model:
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.set_weights([value.astype(np.float32) for values in weights.values() for value in values.values()])
    return model


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return make_digits(30, seed=11).images


@pytest.mark.parametrize("listed", [True, False], ids=["layer-list", "name-and-layers"])
def test_a_keras_2_2_sequential_h5_loads_and_predicts_as_its_weights_do(tmp_path, images, listed):
    weights = keras2_weights()
    path = write_keras2_h5(tmp_path / "cnn_for_mnist.h5", keras2_layers(), weights, listed)
    with pytest.raises(Exception, match="Kernel shape|pop expected"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras 3 alone misreads the file
        keras.saving.load_model(path, compile=False)

    model = load_model(path)
    assert [layer.name for layer in model.layers] == ["conv2d_1", "max_pooling2d_1", "flatten_1", "dense_1"]
    assert tuple(model.inputs[0].shape) == (None, 28, 28, 1)
    expected = same_weights_in_keras3(weights)
    np.testing.assert_allclose(input_adapter(model)(images), input_adapter(expected)(images), atol=1e-6)
    assert digitlab.load_model(path).predict(images).tolist() == input_adapter(expected)(images).argmax(1).tolist()


def test_weights_that_do_not_fit_the_layers_are_refused_naming_the_file_and_layer(tmp_path):
    weights = keras2_weights()
    weights["dense_1"]["kernel:0"] = weights["dense_1"]["kernel:0"][:100]
    path = write_keras2_h5(tmp_path / "cut.h5", keras2_layers(), weights)
    with pytest.raises(ModelError, match=r"cut\.h5: the weights stored for layer 'dense_1' have shapes"):
        load_model(path)


def test_a_keras_2_lambda_layer_is_refused_unrun(tmp_path):
    layers = keras2_layers()
    lambda_config = {"name": "lambda_1", "trainable": True, "function": ["4wEAAAAA", None, None],
                     "function_type": "lambda", "module": "__main__", "output_shape": None,
                     "output_shape_type": "raw", "arguments": {}}
    layers.insert(2, {"class_name": "Lambda", "config": lambda_config})
    path = write_keras2_h5(tmp_path / "lambda.h5", layers, keras2_weights() | {"lambda_1": {}})
    with pytest.raises(ModelError, match=r"lambda\.h5: refused: the model holds Python code"):
        load_model(path)


def test_a_layer_keras_3_does_not_have_is_named(tmp_path):
    layers = keras2_layers()
    layers[1] = {"class_name": "Merge", "config": {"name": "max_pooling2d_1", "mode": "sum"}}
    path = write_keras2_h5(tmp_path / "merge.h5", layers, keras2_weights())
    with pytest.raises(ModelError, match=r"merge\.h5: a Keras 2 model with the layer 'Merge', which Keras 3 does "
                                         r"not have; .*load_weights\('merge\.h5'\)") as raised:
        load_model(path)
    assert "\n" not in str(raised.value)


def test_a_keras_2_functional_model_keeps_keras_3s_own_explanation(tmp_path):
    path = write_keras2_h5(tmp_path / "functional.h5", keras2_layers(), keras2_weights())
    with h5py.File(path, "r+") as file:
        file.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"layers": []}}).encode()
    with pytest.raises(ModelError, match=r"functional\.h5: Keras 3 cannot read this legacy Keras 2"):
        load_model(path)
