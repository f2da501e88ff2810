"""Test-time augmentation: exact shifts, Pillow-like rotations, and averaging over the variants."""

import numpy as np
import pytest
from PIL import Image

from digitlab.inference.tta import (
    DEFAULT_ROTATIONS,
    DEFAULT_SHIFTS,
    TestTimeAugmentation,
    rotate_images,
    shift_images,
    tta_predict_function,
)

MARGIN = 3  # black pixels around each test digit, as MNIST digits have


def margined_images(count: int = 12, seed: int = 0) -> np.ndarray:
    generator = np.random.default_rng(seed)
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    images[:, MARGIN:-MARGIN, MARGIN:-MARGIN] = generator.integers(
        0, 256, size=(count, 28 - 2 * MARGIN, 28 - 2 * MARGIN), dtype=np.uint8
    )
    return images


def linear_softmax(seed: int = 0):
    """A fake model: a fixed random linear map of the pixels, then a softmax."""
    weights = np.random.default_rng(seed).normal(size=(28 * 28, 10)) / 2000

    def predict(images: np.ndarray) -> np.ndarray:
        scores = images.reshape(len(images), -1).astype(np.float64) @ weights
        exponentials = np.exp(scores - scores.max(axis=1, keepdims=True))
        return (exponentials / exponentials.sum(axis=1, keepdims=True)).astype(np.float32)

    return predict


def pillow_rotation(image: np.ndarray, degrees: float) -> np.ndarray:
    """Pillow's bilinear rotation, on floats and rounded (on uint8 Pillow truncates instead)."""
    turned = Image.fromarray(image.astype(np.float32), mode="F").rotate(degrees, Image.BILINEAR, fillcolor=0)
    return np.rint(np.asarray(turned)).astype(np.uint8)


@pytest.mark.parametrize("down, right", [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (2, -3), (-3, 2)])
def test_shifting_is_exact(down, right):
    images = margined_images()
    assert np.array_equal(shift_images(images, down, right), np.roll(images, (down, right), axis=(1, 2)))


def test_shifting_fills_with_black_and_loses_what_leaves():
    images = np.full((2, 28, 28), 200, dtype=np.uint8)
    shifted = shift_images(images, 1, -2)
    assert (shifted[:, 0, :] == 0).all() and (shifted[:, :, -2:] == 0).all()
    assert (shifted[:, 1:, :-2] == 200).all()
    assert not shift_images(images, 28, 0).any()
    assert shifted.dtype == np.uint8 and images.min() == 200  # the input is left as it was


@pytest.mark.parametrize("degrees", [8, -8, 15, -30, 3.5])
def test_rotation_matches_pillow(degrees):
    images = margined_images(50)
    expected = np.stack([pillow_rotation(image, degrees) for image in images]).astype(int)
    rotated = rotate_images(images, degrees)
    assert rotated.dtype == np.uint8 and rotated.shape == images.shape
    # Equal but where a value lies within float error of a half and rounds the other way.
    difference = np.abs(rotated.astype(int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-4
    # On uint8 images Pillow truncates where digitlab rounds: one grey level at most.
    truncated = np.stack([np.asarray(Image.fromarray(image).rotate(degrees, Image.BILINEAR)) for image in images])
    assert np.abs(rotated.astype(int) - truncated).max() <= 1


def test_rotation_turns_counter_clockwise_and_zero_is_identity():
    images = margined_images(4)
    assert np.array_equal(rotate_images(images, 90), np.rot90(images, 1, axes=(1, 2)))
    assert np.array_equal(rotate_images(images, 0), images)
    corner = np.zeros((1, 28, 28), dtype=np.uint8)
    corner[0, 0, 0] = 255
    assert not rotate_images(corner, 45).any()  # a corner turned 45 degrees leaves the image


def test_tta_averages_the_variants_computed_independently():
    images = margined_images()
    fake = linear_softmax()
    shifts, rotations = ((0, 0), (1, 0), (0, -1)), (0, -8, 8)
    seen = []

    def recording(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return fake(batch)

    result = tta_predict_function(recording, shifts, rotations)(images)
    variants = [
        np.roll(np.stack([pillow_rotation(image, degrees) for image in images]), shift, axis=(1, 2))
        for degrees in rotations
        for shift in shifts
    ]
    assert len(seen) == len(variants) == 9
    for given, variant in zip(seen, variants):
        assert np.abs(given.astype(int) - variant).max() <= 1
    assert result.dtype == np.float32 and result.shape == (len(images), 10)
    assert np.allclose(result, np.mean([fake(batch) for batch in seen], axis=0), atol=1e-6)
    assert np.allclose(result, np.mean([fake(variant) for variant in variants], axis=0), atol=1e-5)
    assert np.allclose(result.sum(axis=1), 1, atol=1e-5)


def test_tta_of_unchanged_images_is_the_plain_result():
    fake = linear_softmax()
    blank = np.zeros((3, 28, 28), dtype=np.uint8)
    assert np.allclose(tta_predict_function(fake, DEFAULT_SHIFTS, (0, -8, 8))(blank), fake(blank), atol=1e-7)

    def ink_histogram(images: np.ndarray) -> np.ndarray:
        """A fake model that only counts pixel values, so moving the digit changes nothing."""
        counts = np.stack([np.bincount(image.ravel() // 26, minlength=10) for image in images])
        return (counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)

    images = margined_images()
    shifted_only = tta_predict_function(ink_histogram, ((0, 0), (1, 0), (-2, 1), (0, -3)), (0,))
    assert np.array_equal(shifted_only(images), ink_histogram(images))
    assert np.array_equal(tta_predict_function(fake, ((0, 0),), (0,))(images), fake(images))


def test_tta_variants_and_refusals():
    function = tta_predict_function(linear_softmax())
    assert isinstance(function, TestTimeAugmentation)
    assert function.variants == [(degrees, shift) for degrees in DEFAULT_ROTATIONS for shift in DEFAULT_SHIFTS]
    assert function(np.zeros((0, 28, 28), dtype=np.uint8)).shape == (0, 10)
    with pytest.raises(ValueError, match="at least one shift"):
        tta_predict_function(linear_softmax(), shifts=())
    with pytest.raises(ValueError, match="out of the image"):
        tta_predict_function(linear_softmax(), shifts=((14, 0),))
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\)"):
        function(np.zeros((2, 32, 32), dtype=np.uint8))


def test_classifier_tta_wraps_its_predict_function(tmp_path):
    import digitlab
    from digitlab.inference.classifier import Classifier

    model = digitlab.models.create("tiny-convnet")
    images = margined_images(20)
    plain = Classifier(model)
    augmented = Classifier(model, tta=True)
    assert "test-time augmentation" in repr(augmented) and augmented.tta and not plain.tta
    expected = tta_predict_function(plain.predict_function)(images)
    assert np.allclose(augmented.predict_probabilities(images), expected, atol=1e-6)
    assert np.array_equal(augmented.predict(images), expected.argmax(axis=1))
    model.save(tmp_path / "model.keras")
    loaded = digitlab.load_model(tmp_path / "model.keras", tta=True)
    assert loaded.tta and np.allclose(loaded.predict_probabilities(images), expected, atol=1e-5)
    assert not digitlab.load_model(tmp_path / "model.keras").tta
