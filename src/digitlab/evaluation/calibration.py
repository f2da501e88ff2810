"""Temperature scaling: probabilities whose confidence matches how often the model is right.

A model trained with label smoothing says "91% sure" of digits it never gets wrong; one that
overfits says "99.9% sure" of digits it often gets wrong. Dividing its logits by one number, the
temperature T, fitted on the validation split to minimise the negative log-likelihood, fixes
most of that without changing any prediction (Guo et al., "On Calibration of Modern Neural
Networks", 2017).

T is stored in the model itself: its last layer, a Dense with softmax, gets its kernel and bias
divided by T, so that it computes softmax(x W / T + b / T) = softmax(logits / T). Wherever the
model goes (model.keras, ONNX, the server and the page) its probabilities are the calibrated ones.

The expected calibration error (ECE) measures what is left: the images are put in 15 bins of
equal width by the confidence of their prediction, and ECE is the mean over images of
|accuracy - mean confidence| of their bin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from digitlab.data.dataset import Dataset

CALIBRATION_BINS = 15
# A validation split the model gets all right has a likelihood that grows without end as T
# falls to 0; bounds keep T finite. They are far from what trained digit models need (label
# smoothing 0.1 asks for about 0.5).
SMALLEST_TEMPERATURE = 0.05
LARGEST_TEMPERATURE = 20.0
# Golden-section search stops when log T is known to this width: T to within 1e-6 of itself.
LOG_TEMPERATURE_TOLERANCE = 1e-6


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) of each row, in float64."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    exponentials = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean -log softmax(logits / temperature)[label] over the rows."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    largest = scaled.max(axis=1)
    log_normaliser = largest + np.log(np.exp(scaled - largest[:, None]).sum(axis=1))
    return float((log_normaliser - scaled[np.arange(len(scaled)), labels]).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the negative log-likelihood of softmax(logits / T).

    The likelihood is convex in 1 / T, so it has one minimum along log T, which golden-section
    search finds between SMALLEST_TEMPERATURE and LARGEST_TEMPERATURE.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or labels.shape != (len(logits),) or len(logits) == 0:
        raise ValueError(f"expected logits (N, classes) and labels (N,), got {logits.shape} and {labels.shape}")

    def loss(log_temperature: float) -> float:
        return negative_log_likelihood(logits, labels, float(np.exp(log_temperature)))

    shrink = (np.sqrt(5) - 1) / 2  # each step keeps this share of the interval
    low, high = np.log(SMALLEST_TEMPERATURE), np.log(LARGEST_TEMPERATURE)
    left, right = high - shrink * (high - low), low + shrink * (high - low)
    left_loss, right_loss = loss(left), loss(right)
    while high - low > LOG_TEMPERATURE_TOLERANCE:
        if left_loss < right_loss:
            high, right, right_loss = right, left, left_loss
            left = high - shrink * (high - low)
            left_loss = loss(left)
        else:
            low, left, left_loss = left, right, right_loss
            right = low + shrink * (high - low)
            right_loss = loss(right)
    return float(np.exp((low + high) / 2))


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """Mean over images of |accuracy - mean confidence| of the confidence bin each falls in.

    Bin b of `bins` equal-width bins holds the predictions whose confidence (probability of the
    predicted class) is in (b / bins, (b + 1) / bins].
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    predictions = probabilities.argmax(axis=1)
    confidences = probabilities[np.arange(len(labels)), predictions]
    bin_numbers = np.clip(np.ceil(confidences * bins).astype(np.int64) - 1, 0, bins - 1)
    # A bin's sum of (correct - confidence) is its image count times (accuracy - mean confidence).
    gaps = np.bincount(bin_numbers, weights=(predictions == labels) - confidences, minlength=bins)
    return float(np.abs(gaps).sum() / len(labels))


# --- the temperature in a Keras model ---------------------------------------------------------


def final_softmax_layer(model: Any) -> Any | None:
    """The model's last layer if it is a Dense layer with softmax that gives the model's only
    output (every digitlab zoo model ends so); None otherwise."""
    from digitlab.compute.backend import keras

    layers = getattr(model, "layers", None)
    outputs = getattr(model, "outputs", None)
    if not layers or not outputs or len(outputs) != 1:
        return None
    last = layers[-1]
    if not isinstance(last, keras().layers.Dense) or last.activation is not keras().activations.softmax:
        return None
    try:
        return last if last.output is outputs[0] else None
    except (AttributeError, ValueError):  # a layer called more than once has no single output
        return None


def logits(model: Any, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The float64 logits (before the softmax) of a model that ends in a softmax Dense layer.

    They are computed from the features the layer receives, not as log of the probabilities:
    float32 probabilities of confident predictions round to 1 or underflow to 0, their logits don't.
    """
    from digitlab.compute.backend import keras

    layer = final_softmax_layer(model)
    if layer is None:
        raise ValueError(f"model {getattr(model, 'name', model)!r} does not end in a Dense layer with softmax")
    features = keras().Model(model.inputs, layer.input).predict(images, batch_size=batch_size, verbose=0)
    kernel = np.asarray(keras().ops.convert_to_numpy(layer.kernel), dtype=np.float64)
    result = np.asarray(features, dtype=np.float64) @ kernel
    if layer.use_bias:
        result += np.asarray(keras().ops.convert_to_numpy(layer.bias), dtype=np.float64)
    return result


def apply_temperature(model: Any, temperature: float) -> None:
    """Divide the kernel and bias of the model's final softmax Dense layer by `temperature`."""
    from digitlab.compute.backend import keras

    layer = final_softmax_layer(model)
    if layer is None:
        raise ValueError(f"model {getattr(model, 'name', model)!r} does not end in a Dense layer with softmax")
    if not temperature > 0:
        raise ValueError(f"the temperature must be positive, got {temperature}")
    variables = [layer.kernel, layer.bias] if layer.use_bias else [layer.kernel]
    for variable in variables:
        value = np.asarray(keras().ops.convert_to_numpy(variable), dtype=np.float64) / temperature
        variable.assign(value.astype(variable.dtype))


def calibrate(model: Any, dataset: Dataset) -> float | None:
    """Fit the temperature on labelled `dataset` and store it in the model; returns it.

    A model that does not end in a softmax Dense layer is left as it is and gives None.
    """
    if final_softmax_layer(model) is None:
        return None
    temperature = fit_temperature(logits(model, dataset.images), dataset.labels)
    apply_temperature(model, temperature)
    return temperature
