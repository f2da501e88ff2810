"""Keras layers that digitlab's models need and Keras 3 no longer ships."""

from __future__ import annotations

from typing import Any

from digitlab.compute.backend import keras as _started_keras

keras = _started_keras()
activations, constraints, initializers, ops, regularizers = (
    keras.activations, keras.constraints, keras.initializers, keras.ops, keras.regularizers
)


def _pair(value: int | tuple[int, int] | list[int], option: str) -> tuple[int, int]:
    """Return `value` as (rows, columns) of positive integers, or raise naming `option`."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(item, int) and item > 0 for item in pair):
        raise ValueError(f"{option} must be a positive integer or a pair of them; got {option}={value!r}")
    return pair


def _fan(mode: str, fan_in: int, fan_out: int) -> float:
    """The fan a variance-scaling initializer with `mode` divides its scale by."""
    return {"fan_in": fan_in, "fan_out": fan_out}.get(mode, (fan_in + fan_out) / 2)


@keras.saving.register_keras_serializable(package="digitlab")
class LocallyConnected2D(keras.layers.Layer):
    """A 2D convolution whose weights are not shared between output positions.

    Importing `digitlab.models` registers it, so that plain `keras.saving.load_model` opens files
    holding it; `import digitlab` alone does not, as it leaves Keras and TensorFlow unloaded.

    For every output position (i, j) and filter f the output is the sum, over
    the kernel window and the input channels, of input times the kernel of
    position (i, j), plus `bias[i, j, f]`. Inputs are channels_last,
    (batch, rows, columns, channels), and only `padding="valid"` is supported.

    The weights are those of Keras 2's layer of the same name (its default
    `implementation=1`), so Keras 2 .h5 files load unchanged: kernel
    (out_rows * out_columns, kernel_rows * kernel_columns * channels, filters),
    positions in row-major order and each window flattened in (row, column,
    channel) order, and bias (out_rows, out_columns, filters).

    Args:
        filters: Number of output channels.
        kernel_size: Window size, an integer or (rows, columns).
        strides: Step between windows, an integer or (rows, columns).
        padding: Only "valid".
        activation: Activation applied to the output, or None.
        use_bias: Whether to add a bias per output position and filter.
        kernel_initializer: Initializer for the kernel.
        bias_initializer: Initializer for the bias.
        kernel_regularizer, bias_regularizer: Optional weight regularizers.
        kernel_constraint, bias_constraint: Optional weight constraints.
        data_format: Only "channels_last" (or None); accepted for Keras 2 configs.
        implementation: Only 1; accepted for Keras 2 configs.
        **kwargs: Passed on to `keras.layers.Layer` (name, dtype, activity_regularizer, ...).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: str = "valid",
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        data_format: str | None = None,
        implementation: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"filters must be a positive integer; got filters={filters!r}")
        if not isinstance(padding, str) or padding.lower() != "valid":
            raise ValueError(f"LocallyConnected2D supports only padding='valid'; got padding={padding!r}")
        if data_format not in (None, "channels_last"):
            raise ValueError(
                f"LocallyConnected2D supports only data_format='channels_last'; got data_format={data_format!r}"
            )
        if implementation != 1:
            raise ValueError(
                f"LocallyConnected2D supports only implementation=1 (Keras 2's default weight layout); "
                f"got implementation={implementation!r}"
            )
        self.filters = filters
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = "valid"
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _output_size(self, input_shape: tuple[int | None, ...]) -> tuple[int, int]:
        rows, columns = input_shape[1], input_shape[2]
        if rows is None or columns is None:
            raise ValueError(f"LocallyConnected2D needs known input rows and columns; got input shape {input_shape}")
        output_rows = (rows - self.kernel_size[0]) // self.strides[0] + 1
        output_columns = (columns - self.kernel_size[1]) // self.strides[1] + 1
        if output_rows <= 0 or output_columns <= 0:
            raise ValueError(
                f"kernel_size={self.kernel_size} does not fit in an input of {rows}x{columns} "
                "with padding='valid'"
            )
        return output_rows, output_columns

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"LocallyConnected2D needs a known number of input channels; got {input_shape}")
        self.output_rows, self.output_columns = self._output_size(input_shape)
        window_size = self.kernel_size[0] * self.kernel_size[1] * channels
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.output_rows * self.output_columns, window_size, self.filters),
            initializer=self._per_position_initializer(window_size),
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.output_rows, self.output_columns, self.filters),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})

    def _per_position_initializer(self, window_size: int) -> Any:
        # Variance-scaling initializers (glorot, he, lecun) would read the
        # position axis as a receptive field, as Keras 2's layer did, and so
        # shrink the weights by the number of positions; rescale them so that
        # each position starts like a Conv2D kernel with the same window.
        initializer = self.kernel_initializer
        if not isinstance(initializer, initializers.VarianceScaling) or getattr(initializer, "input_axes", None):
            return initializer
        positions = self.output_rows * self.output_columns
        window_cells = self.kernel_size[0] * self.kernel_size[1]
        seen_fan = _fan(initializer.mode, positions * window_size, positions * self.filters)
        convolution_fan = _fan(initializer.mode, window_size, window_cells * self.filters)
        return initializers.VarianceScaling(
            scale=initializer.scale * seen_fan / convolution_fan,
            mode=initializer.mode,
            distribution=initializer.distribution,
            seed=initializer.seed,
        )

    def call(self, inputs: Any) -> Any:
        positions = (self.output_rows, self.output_columns)
        window_size = self.kernel.shape[1]
        patches = ops.reshape(self._patches(inputs), (-1, *positions, window_size))
        kernel = ops.reshape(self.kernel, (*positions, window_size, self.filters))
        outputs = ops.einsum("bijk,ijkf->bijf", patches, kernel)
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def _patches(self, inputs: Any) -> Any:
        """(batch, out_rows, out_columns, window cells, channels), cells in (row, column) order."""
        row_stride, column_stride = self.strides
        row_span = row_stride * (self.output_rows - 1) + 1
        column_span = column_stride * (self.output_columns - 1) + 1
        # One strided slice per window offset; slicing copies values exactly.
        offsets = [
            inputs[:, row : row + row_span : row_stride, column : column + column_span : column_stride, :]
            for row in range(self.kernel_size[0])
            for column in range(self.kernel_size[1])
        ]
        return ops.stack(offsets, axis=3)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        output_rows, output_columns = self._output_size(input_shape)
        return (input_shape[0], output_rows, output_columns, self.filters)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": constraints.serialize(self.kernel_constraint),
                "bias_constraint": constraints.serialize(self.bias_constraint),
                "data_format": "channels_last",
            }
        )
        return config



@keras.saving.register_keras_serializable(package="digitlab")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization that trains with TensorFlow's fused kernel, as Keras 2's `fused=True` did.

    Keras 3 normalises a batch with separate moment, subtract and scale ops; on a CPU those cost a
    small convnet 40% of its training time, and TensorFlow's single FusedBatchNormV3 kernel saves
    most of it. The results are those of BatchNormalization: the same weights, the same moving
    averages (the kernel's Bessel-corrected variance is turned back into Keras' biased one) and,
    outside training or on other backends, the same code path. Run folders store it as Keras'
    BatchNormalization (`digitlab.inference.keras_models.save_model`), so plain Keras opens them;
    a file saved with this layer loads wherever digitlab is installed. Under a mixed-precision
    policy the kernel takes the bfloat16 or float16 activations as they are and keeps its
    statistics in float32, which halves the training time of a mid-sized convnet on a CPU with AMX.
    """

    def _fusable(self, inputs: Any, training: Any, mask: Any) -> bool:
        return (
            bool(training) and mask is None and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) in (2, 4) and self.axis in (-1, len(inputs.shape) - 1)
            and not getattr(self, "renorm", False) and not self.synchronized
            and self.compute_dtype in ("float32", "bfloat16", "float16")
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        images = inputs if len(inputs.shape) == 4 else tf.reshape(inputs, (-1, 1, 1, channels))
        scale = self.gamma if self.scale else tf.ones((channels,), inputs.dtype)
        offset = self.beta if self.center else tf.zeros((channels,), inputs.dtype)
        outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            images, scale, offset, epsilon=self.epsilon, data_format="NHWC", is_training=True
        )
        count = tf.cast(tf.size(images) // channels, unbiased_variance.dtype)
        variance = unbiased_variance * tf.maximum(count - 1.0, 0.0) / tf.maximum(count, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs if len(inputs.shape) == 4 else tf.reshape(outputs, tf.shape(inputs))
