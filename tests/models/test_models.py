"""Tests of the model zoo (digitlab.models) and of LocallyConnected2D (digitlab.models.layers)."""

from __future__ import annotations

import sys
import types
from importlib import metadata

import keras
import numpy as np
import pytest

from digitlab import models
from digitlab.errors import DigitlabError
from digitlab.models.layers import FusedBatchNormalization, LocallyConnected2D

# (all parameters, trainable parameters) of each built-in model with default options.
STATED_PARAMETER_COUNTS = {
    "three-conv-batchnorm": (187_018, 186_634),
    "locally-connected": (66_142, 66_142),
    "tiny-convnet": (1_815, 1_815),
    "four-conv-dropout": (814_970, 814_778),  # the notebook's valid padding: a 4x4x32 flatten
    "five-conv-batchnorm": (1_022_858, 1_021_706),  # as the original notebook's summary states
    "simple-convnet": (34_826, 34_826),  # as the Keras example states
    "gap-convnet": (70_746, 70_330),
    "fast-convnet": (154_458, 154_106),
    "deep-convnet": (597_162, 596_330),
}

USER_MODEL_FILE = '''
import keras
from keras import layers

import digitlab.models


@digitlab.models.register_model("user-dense", "Flatten > Dense 32 > Dense10")
def user_dense(hidden_units: int = 32) -> keras.Model:
    inputs = keras.Input(shape=(28, 28), dtype="uint8")
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Flatten()(x)
    x = layers.Dense(hidden_units, activation="relu")(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="user-dense")
'''


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register models without leaving them behind for other tests."""
    monkeypatch.setattr(models, "_entries", dict(models._entries))
    monkeypatch.setattr(models, "_loaded_files", {})


def pattern_images(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (count, 28, 28) images whose label is the one of ten bright bars the image shows."""
    random = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = random.integers(0, 60, size=(count, 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels):
        # Labels 0..4 are horizontal bars, 5..9 vertical ones, at different places.
        place = 3 + 5 * (label % 5)
        if label < 5:
            image[place : place + 3, 4:24] = 255
        else:
            image[4:24, place : place + 3] = 255
    return images, labels


def trainable_count(model: keras.Model) -> int:
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


# --- every registered model ---------------------------------------------------------------


@pytest.mark.parametrize("name", models.names())
def test_model_classifies_raw_pixels_and_learns(name: str) -> None:
    keras.utils.set_random_seed(0)
    model = models.create(name)
    assert model.name == name
    assert tuple(model.inputs[0].shape) == (None, 28, 28)
    assert model.inputs[0].dtype == "uint8"
    images, labels = pattern_images(64)

    probabilities = keras.ops.convert_to_numpy(model(images[:5], training=False))
    assert probabilities.shape == (5, 10)
    assert np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    losses = [float(model.train_on_batch(images, labels)) for _ in range(4)]
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", models.names())
def test_model_rescales_pixels_once_as_its_first_layer(name: str) -> None:
    model = models.create(name)
    rescaling = model.layers[1]
    assert isinstance(rescaling, keras.layers.Rescaling)
    assert rescaling.scale == pytest.approx(1 / 255)
    assert sum(isinstance(layer, keras.layers.Rescaling) for layer in model.layers) == 1


@pytest.mark.parametrize("name", models.names())
def test_description_is_one_line(name: str) -> None:
    description = models.describe(name)
    assert description and "\n" not in description


def test_every_built_in_model_has_a_stated_parameter_count() -> None:
    assert set(STATED_PARAMETER_COUNTS) <= set(models.names())


@pytest.mark.parametrize("name", sorted(STATED_PARAMETER_COUNTS))
def test_parameter_counts(name: str) -> None:
    model = models.create(name)
    assert (model.count_params(), trainable_count(model)) == STATED_PARAMETER_COUNTS[name]


def test_options_reach_the_builder() -> None:
    assert models.default_options("simple-convnet") == {"dropout_rate": 0.5}
    model = models.create("simple-convnet", dropout_rate=0.3)
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.3]
    assert models.create("gap-convnet", width=8).count_params() < STATED_PARAMETER_COUNTS["gap-convnet"][0]


def test_unknown_option_names_the_options_the_model_takes() -> None:
    with pytest.raises(models.ModelOptionError, match="dropout_rate") as caught:
        models.create("simple-convnet", dropuot_rate=0.3)
    assert "dropuot_rate" in str(caught.value)


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(models.UnknownModelError) as caught:
        models.create("no-such-model")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, DigitlabError)
    message = str(caught.value)
    assert "no-such-model" in message
    assert all(name in message for name in models.names())
    with pytest.raises(models.UnknownModelError):
        models.describe("no-such-model")


# --- user models --------------------------------------------------------------------------


def test_user_file_registers_a_createable_model(tmp_path, isolated_registry) -> None:
    path = tmp_path / "my_models.py"
    path.write_text(USER_MODEL_FILE)
    assert models.load_user_models(path) == ["user-dense"]
    assert "user-dense" in models.names()
    assert models.describe("user-dense") == "Flatten > Dense 32 > Dense10"
    model = models.create("user-dense", hidden_units=8)
    assert model.count_params() == 28 * 28 * 8 + 8 + 8 * 10 + 10
    assert models.load_user_models(path) == ["user-dense"]  # loading twice is harmless


def test_user_file_that_fails_names_the_file_and_registers_nothing(tmp_path, isolated_registry) -> None:
    path = tmp_path / "broken.py"
    path.write_text(USER_MODEL_FILE + "\nraise RuntimeError('half written')\n")
    with pytest.raises(models.UserModelsError, match="broken.py.*half written"):
        models.load_user_models(path)
    assert "user-dense" not in models.names()


def test_user_file_without_models_is_an_error(tmp_path, isolated_registry) -> None:
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    with pytest.raises(models.UserModelsError, match="registers no model"):
        models.load_user_models(path)
    with pytest.raises(models.UserModelsError, match="no such file"):
        models.load_user_models(tmp_path / "missing.py")


def test_taken_name_is_refused_unless_replaced(isolated_registry) -> None:
    with pytest.raises(models.ModelRegistrationError, match="already taken"):
        models.register("simple-convnet", models.tiny_convnet, "again")
    models.register("simple-convnet", models.tiny_convnet, "replaced", replace=True)
    assert models.describe("simple-convnet") == "replaced"


def test_entry_point_plugins_are_discovered(monkeypatch, isolated_registry) -> None:
    plugin = types.ModuleType("digitlab_test_plugin")

    def plugin_dense() -> keras.Model:
        """A dense model from a plugin package.

        More text that is not part of the description.
        """
        inputs = keras.Input(shape=(28, 28), dtype="uint8")
        x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
        return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name="plugin-dense")

    plugin.plugin_dense = plugin_dense
    monkeypatch.setitem(sys.modules, "digitlab_test_plugin", plugin)
    entry_point = metadata.EntryPoint("plugin-dense", "digitlab_test_plugin:plugin_dense", models.ENTRY_POINT_GROUP)
    broken = metadata.EntryPoint("broken", "digitlab_no_such_module:builder", models.ENTRY_POINT_GROUP)
    monkeypatch.setattr(models.metadata, "entry_points", lambda group: [entry_point, broken])
    monkeypatch.setattr(models, "_entry_points_loaded", False)

    with pytest.warns(UserWarning, match="broken"):
        assert "plugin-dense" in models.names()
    assert models.describe("plugin-dense") == "A dense model from a plugin package."
    assert models.create("plugin-dense").count_params() == 7850


# --- LocallyConnected2D -------------------------------------------------------------------


def locally_connected_reference(
    inputs: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    output_size: tuple[int, int],
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
) -> np.ndarray:
    """Plain loops over Keras 2's layout: kernel[position, (row, column, channel), filter]."""
    batch, _, _, channels = inputs.shape
    output_rows, output_columns = output_size
    filters = kernel.shape[-1]
    outputs = np.zeros((batch, output_rows, output_columns, filters))
    for i in range(output_rows):
        for j in range(output_columns):
            for f in range(filters):
                total = np.zeros(batch) if bias is None else np.full(batch, bias[i, j, f])
                for row in range(kernel_size[0]):
                    for column in range(kernel_size[1]):
                        for channel in range(channels):
                            cell = (row * kernel_size[1] + column) * channels + channel
                            weight = kernel[i * output_columns + j, cell, f]
                            pixel = inputs[:, i * strides[0] + row, j * strides[1] + column, channel]
                            total += pixel * weight
                outputs[:, i, j, f] = total
    return outputs


@pytest.mark.parametrize(
    ("input_shape", "filters", "kernel_size", "strides", "use_bias"),
    [
        ((3, 6, 6, 1), 2, (3, 3), (1, 1), True),
        ((2, 7, 8, 3), 4, (3, 2), (2, 1), True),
        ((2, 9, 9, 2), 3, (2, 2), (2, 2), True),
        ((2, 8, 7, 4), 2, (3, 3), (2, 3), False),
    ],
)
def test_locally_connected_matches_numpy_loops(input_shape, filters, kernel_size, strides, use_bias) -> None:
    random = np.random.default_rng(1)
    inputs = random.normal(size=input_shape).astype("float32")
    layer = LocallyConnected2D(filters, kernel_size, strides=strides, use_bias=use_bias)
    layer.build(input_shape)
    kernel = random.normal(size=layer.kernel.shape).astype("float32")
    bias = random.normal(size=layer.bias.shape).astype("float32") if use_bias else None
    layer.set_weights([kernel, bias] if use_bias else [kernel])

    outputs = keras.ops.convert_to_numpy(layer(inputs))
    output_size = layer.compute_output_shape(input_shape)[1:3]
    expected = locally_connected_reference(inputs, kernel, bias, output_size, kernel_size, strides)
    assert outputs.shape == expected.shape == layer.compute_output_shape(input_shape)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


def test_locally_connected_activation_and_parameter_count() -> None:
    layer = LocallyConnected2D(4, 4, activation="relu")
    inputs = np.random.default_rng(2).normal(size=(2, 28, 28, 1)).astype("float32")
    outputs = keras.ops.convert_to_numpy(layer(inputs))
    assert outputs.min() == 0.0
    # The Keras 2 layer's count: a kernel and a bias for each of the 25x25 positions.
    assert layer.count_params() == 25 * 25 * 4 * 4 * 1 * 4 + 25 * 25 * 4


def test_locally_connected_initialises_each_position_like_a_convolution() -> None:
    layer = LocallyConnected2D(4, 4)
    layer.build((None, 28, 28, 1))
    kernel = layer.get_weights()[0]
    glorot_limit = np.sqrt(6 / (4 * 4 * 1 + 4 * 4 * 4))  # of a Conv2D with the same window
    assert np.abs(kernel).max() <= glorot_limit
    assert np.abs(kernel).max() > 0.9 * glorot_limit


@pytest.mark.parametrize(
    ("option", "value"),
    [("padding", "same"), ("padding", "causal"), ("data_format", "channels_first"), ("implementation", 2)],
)
def test_locally_connected_refuses_what_it_does_not_support(option: str, value) -> None:
    with pytest.raises(ValueError, match=option):
        LocallyConnected2D(2, 3, **{option: value})


def test_locally_connected_takes_a_keras_2_config_and_weights() -> None:
    keras_2_config = {
        "name": "locally_connected2d",
        "trainable": True,
        "dtype": "float32",
        "filters": 3,
        "kernel_size": [3, 3],
        "strides": [1, 1],
        "padding": "valid",
        "data_format": "channels_last",
        "activation": "relu",
        "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": None,
        "bias_regularizer": None,
        "activity_regularizer": None,
        "kernel_constraint": None,
        "bias_constraint": None,
        "implementation": 1,
    }
    layer = LocallyConnected2D.from_config(keras_2_config)
    layer.build((None, 6, 5, 2))
    random = np.random.default_rng(3)
    # Keras 2's shapes: kernel (output positions, window * channels, filters), bias (rows, columns, filters).
    kernel = random.normal(size=(4 * 3, 3 * 3 * 2, 3)).astype("float32")
    bias = random.normal(size=(4, 3, 3)).astype("float32")
    layer.set_weights([kernel, bias])
    inputs = random.normal(size=(2, 6, 5, 2)).astype("float32")
    expected = np.maximum(locally_connected_reference(inputs, kernel, bias, (4, 3), (3, 3), (1, 1)), 0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(inputs)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, layer_class, count", [
    ("locally-connected", LocallyConnected2D, 1),
    ("fast-convnet", FusedBatchNormalization, 3),
])
def test_model_with_digitlab_layers_saves_and_loads(tmp_path, name, layer_class, count) -> None:
    model = models.create(name)
    images, _ = pattern_images(8)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert sum(isinstance(layer, layer_class) for layer in loaded.layers) == count
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(images, training=False)),
        keras.ops.convert_to_numpy(model(images, training=False)),
    )


@pytest.mark.parametrize("shape", [(6, 5, 5, 3), (16, 7)])
def test_fused_batch_normalization_trains_and_predicts_as_batch_normalization(shape) -> None:
    random = np.random.default_rng(0)
    plain = keras.layers.BatchNormalization(momentum=0.9)
    fused = FusedBatchNormalization(momentum=0.9)
    gamma, beta = random.normal(size=(2, shape[-1])).astype("float32")
    for layer in (plain, fused):
        layer.build(shape)
        layer.set_weights([gamma, beta, np.zeros(shape[-1], "float32"), np.ones(shape[-1], "float32")])
    for step in range(3):
        batch = (random.normal(size=shape) * 3 + step).astype("float32")
        np.testing.assert_allclose(keras.ops.convert_to_numpy(fused(batch, training=True)),
                                   keras.ops.convert_to_numpy(plain(batch, training=True)), atol=1e-5)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), plain.moving_variance.numpy(), rtol=1e-5)
    # Inference is BatchNormalization's own code; only the float rounding of the averages differs.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fused(batch, training=False)),
                               keras.ops.convert_to_numpy(plain(batch, training=False)), atol=1e-6)


def _training_op_types(layer, shape) -> set[str]:
    """The TensorFlow op types of one training call of `layer`."""
    import tensorflow as tf

    traced = tf.function(lambda batch: layer(batch, training=True))
    graph = traced.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
    return {operation.type for operation in graph.get_operations()}


def test_fused_batch_normalization_in_bfloat16_keeps_float32_statistics() -> None:
    random = np.random.default_rng(1)
    plain = keras.layers.BatchNormalization(momentum=0.9, dtype="mixed_bfloat16")
    fused = FusedBatchNormalization(momentum=0.9, dtype="mixed_bfloat16")
    for layer in (plain, fused):
        layer.build((8, 4, 4, 6))
    batch = (random.normal(size=(8, 4, 4, 6)) * 2 + 1).astype("float32")
    outputs = fused(batch, training=True)
    assert keras.backend.standardize_dtype(outputs.dtype) == "bfloat16"
    assert fused.moving_mean.dtype == "float32"
    assert "FusedBatchNormV3" in _training_op_types(fused, batch.shape)
    # bfloat16 holds about 3 significant digits.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.cast(outputs, "float32")),
                               keras.ops.convert_to_numpy(keras.ops.cast(plain(batch, training=True), "float32")),
                               atol=0.05)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), atol=2e-3)
    np.testing.assert_allclose(fused.moving_variance.numpy(), plain.moving_variance.numpy(), rtol=1e-2)
