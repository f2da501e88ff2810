"""Other writers and captures: each change moves digits the way it says, repeatably, and bad values are refused."""

import numpy as np
import pytest

from digitlab.data.dataset import Dataset
from digitlab.recipes.config import Augmentation, ConfigError, resolve

COPIES = 48  # copies of each drawn digit, so that every change is seen at many strengths


def drawn_digits() -> np.ndarray:
    """A 1 (an upright bar), a 0 (a ring) and a 7, white on black with grey anti-aliased edges."""
    rows, columns = np.mgrid[0:28, 0:28].astype(np.float32)
    one = np.clip(2.0 - np.abs(columns - 13.5), 0, 1) * ((rows >= 4) & (rows < 24))
    ring = np.clip(1.5 - np.abs(np.hypot((rows - 13.5) / 10, (columns - 13.5) / 7) * 8.5 - 7), 0, 1)
    seven = np.clip(1.5 - np.abs(rows - 5.5), 0, 1) * ((columns >= 7) & (columns < 21))
    stem = np.clip(1.5 - np.abs(columns - (20 - (rows - 5) * 0.45)), 0, 1) * ((rows >= 5) & (rows < 24))
    seven = np.maximum(seven, stem)
    return np.round(np.stack([one, ring, seven]) * 255).astype(np.uint8)


def copies(digit: int) -> np.ndarray:
    return np.repeat(drawn_digits()[digit : digit + 1], COPIES, axis=0)


def changed(images: np.ndarray, seed: int = 0, **options) -> np.ndarray:
    """`images` as the training pipeline augments a batch of them, each change on every image unless told."""
    from digitlab.training.pipeline import batch_augmenter

    return batch_augmenter(Augmentation(**({"probability": 1.0} | options)), seed)(images, 0).numpy()


def ink(images: np.ndarray) -> np.ndarray:
    return images >= 128


def box_widths_and_heights(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    def extent(marks):
        return np.array([np.flatnonzero(row)[-1] - np.flatnonzero(row)[0] + 1 for row in marks])

    marked = ink(images)
    return extent(marked.any(axis=1)), extent(marked.any(axis=2))


def sharpness(images: np.ndarray) -> np.ndarray:
    """Per image: squared differences between neighbouring pixels, per unit of ink."""
    floats = images.astype(np.float64)
    steps = (np.diff(floats, axis=1) ** 2).sum(axis=(1, 2)) + (np.diff(floats, axis=2) ** 2).sum(axis=(1, 2))
    return steps / floats.sum(axis=(1, 2))


def centre_of_mass(images: np.ndarray) -> np.ndarray:
    grid = np.arange(28)
    total = images.sum(axis=(1, 2)).astype(np.float64)
    rows, columns = (images.sum(axis=2) * grid).sum(axis=1), (images.sum(axis=1) * grid).sum(axis=1)
    return np.stack([rows / total, columns / total], axis=1)


def test_thicker_strokes_cover_the_old_ink_and_more_thinner_strokes_less_of_it():
    original = copies(1)
    result = changed(original, stroke_width=4)
    before = ink(original).sum(axis=(1, 2))
    after = ink(result).sum(axis=(1, 2))
    thicker, thinner = after > before, after < before
    assert thicker.sum() > COPIES / 4 and thinner.sum() > COPIES / 4
    assert (ink(result[thicker]) >= ink(original[thicker])).all()  # dilation keeps every inked pixel
    assert (ink(result[thinner]) <= ink(original[thinner])).all()
    assert after.max() >= 2 * before[0]  # a ring 4 pixels thicker: about twice the ink
    assert (result.max(axis=(1, 2)) == 255).all()


def test_stretch_widens_a_narrow_digit_up_to_a_square_box_keeping_its_height_and_centre():
    original = copies(0)  # a bar 4 pixels wide, 20 tall
    result = changed(original, stretch=1.0)
    widths, heights = box_widths_and_heights(result)
    original_width = box_widths_and_heights(original[:1])[0][0]
    assert widths.max() >= 14 and widths.min() < original_width  # toward a square, and away from it
    assert (widths <= 21).all() and (np.abs(heights - 20) <= 1).all()  # the longer side keeps its length
    assert np.abs(centre_of_mass(result) - centre_of_mass(original)).max() < 1.0


def test_slant_shifts_columns_in_proportion_to_rows_either_way():
    result = changed(copies(0), slant=30)
    rows = np.arange(6, 22)
    slopes = []
    for image in result.astype(np.float64):
        column_centres = (image[rows] * np.arange(28)).sum(axis=1) / image[rows].sum(axis=1)
        slopes.append(np.polyfit(rows, column_centres, 1)[0])
    slopes = np.array(slopes)
    # A positive slant leans the top right: columns fall as rows grow; tan(30 degrees) = 0.58.
    assert slopes.min() < -0.3 and slopes.max() > 0.3 and np.abs(slopes).max() <= np.tan(np.radians(30)) + 0.05


def test_elastic_distortion_bends_strokes_but_keeps_the_digit_in_place():
    original = copies(1)
    result = changed(original, elastic=2.0)
    moved = (result != original).any(axis=(1, 2))
    assert moved.mean() > 0.9
    assert np.abs(centre_of_mass(result) - centre_of_mass(original)).mean() < 1.0
    ink_ratio = result.sum(axis=(1, 2)) / original.sum(axis=(1, 2))
    assert 0.7 < np.median(ink_ratio) < 1.3


def test_low_resolution_blurs_and_binarise_leaves_only_black_and_white():
    original = copies(2)
    low = changed(original, low_resolution=6)
    blurred = sharpness(low) < sharpness(original[:1])[0] * 0.9
    assert blurred.mean() > 0.5 and (low.max(axis=(1, 2)) == 255).all()
    binary = changed(original, binarise=0.4)
    assert set(np.unique(binary)) == {0, 255}
    assert (ink(binary) <= (original > 0)).all()  # nothing inked where there was no ink
    # A binary scan at low resolution, enlarged: grey edges again, as preparation would produce.
    both = changed(original, low_resolution=8, binarise=0.3)
    assert len(np.unique(both)) > 2 and (both.max(axis=(1, 2)) == 255).all()


def test_blur_makes_edges_softer_and_keeps_the_peak():
    original = copies(2)
    result = changed(original, blur=2.0)
    assert (sharpness(result) <= sharpness(original[:1])[0] + 1e-9).all()
    assert (sharpness(result) < sharpness(original[:1])[0] * 0.8).mean() > 0.5
    assert (result.max(axis=(1, 2)) == 255).all()


def test_faint_ink_still_peaks_at_255_but_is_fainter_and_uneven():
    original = copies(1)
    result = changed(original, faint=1.0)
    full = original[0] == 255  # where the drawn ring is solid
    assert (result.max(axis=(1, 2)) == 255).all()
    ink_levels = result[:, full].astype(np.float64)
    assert ink_levels.mean() < 230 and ink_levels.std(axis=1).mean() > 10


def test_every_change_at_once_gives_uint8_28x28_digits_in_range_and_is_repeatable():
    from digitlab.training import pipeline

    images = np.concatenate([copies(digit)[:20] for digit in range(3)])
    dataset = Dataset(images, np.arange(len(images)) % 10)
    # Not rotation, zoom or shifts: Keras' layers repeat themselves only with op determinism on.
    augmentation = Augmentation(
        stroke_width=5, stretch=1, slant=45, elastic=4, low_resolution=4, binarise=0.45, blur=3, faint=1,
        probability=0.7,
    )

    def first_batches(seed):
        stream = iter(pipeline.batches(dataset, 16, seed, augmentation))
        return [next(stream)[0].numpy() for _ in range(3)]

    batches = first_batches(5)
    for batch in batches:
        assert batch.dtype == np.uint8 and batch.shape == (16, 28, 28) and batch.max() > 0
    assert all(np.array_equal(first, again) for first, again in zip(batches, first_batches(5)))
    assert not all(np.array_equal(first, other) for first, other in zip(batches, first_batches(6)))


def test_options_at_0_leave_images_unchanged_and_unchosen_images_pass_through():
    original = np.concatenate([copies(digit) for digit in range(3)])
    assert np.array_equal(changed(original, probability=0.5), original)
    assert not Augmentation(probability=0.5, elastic_smoothness=2).active
    result = changed(original, slant=20, faint=0.5, probability=0.3)
    untouched = (result == original).all(axis=(1, 2))
    assert 0.3 < untouched.mean() < 0.7  # about 0.7 ** 2 of the images see neither change


@pytest.mark.parametrize("settings, message", [
    ({"stroke_width": -1}, r"^augmentation.stroke_width must be in \[0, 6\), got -1.0$"),
    ({"stretch": 1.5}, r"^augmentation.stretch must be in \[0, 1\], got 1.5$"),
    ({"slant": 60}, r"^augmentation.slant must be in \[0, 60\), got 60.0$"),
    ({"elastic": 9}, r"^augmentation.elastic must be in \[0, 8\), got 9.0$"),
    ({"elastic_smoothness": 0.5}, r"^augmentation.elastic_smoothness must be in \[1, 14\], got 0.5$"),
    ({"low_resolution": 2}, r"^augmentation.low_resolution must be 0 \(off\) or in \[4, 20\), got 2.0$"),
    ({"binarise": 0.5}, r"^augmentation.binarise must be in \[0, 0.5\), got 0.5$"),
    ({"blur": 4}, r"^augmentation.blur must be in \[0, 4\), got 4.0$"),
    ({"faint": 1.5}, r"^augmentation.faint must be in \[0, 1\], got 1.5$"),
    ({"probability": 0}, r"^augmentation.probability must be in \(0, 1\], got 0.0$"),
    ({"probability": 1.2}, r"^augmentation.probability must be in \(0, 1\], got 1.2$"),
])
def test_bad_values_are_refused_naming_the_option(settings, message):
    with pytest.raises(ConfigError, match=message):
        resolve(overrides={"augmentation": settings})


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    config_file = tmp_path / "mine.toml"
    config_file.write_text("[augmentation]\nstretch = 2\n")
    with pytest.raises(ConfigError, match=r"mine.toml: augmentation.stretch must be in \[0, 1\], got 2.0$"):
        resolve("handwriting", config_file)


def test_handwriting_recipe_is_accurate_plus_every_change():
    from digitlab.recipes.config import recipe_names, recipe_summary

    assert "handwriting" in recipe_names() and recipe_summary("handwriting").startswith("For reading people's digits")
    handwriting, accurate = resolve("handwriting"), resolve("accurate")
    assert (handwriting.model, handwriting.model_options) == (accurate.model, accurate.model_options)
    assert handwriting.epochs == accurate.epochs == 10
    assert handwriting.augmentation.rotation == accurate.augmentation.rotation
    for name in ("stroke_width", "stretch", "slant", "elastic", "low_resolution", "binarise", "blur", "faint"):
        assert getattr(handwriting.augmentation, name) > 0, name


def test_handwriting_recipe_trains_end_to_end(tmp_path):
    from conftest import make_learnable_digits
    from digitlab.data.convert import convert
    from digitlab.training.fit import train

    parts = {"train": make_learnable_digits(200), "test": make_learnable_digits(50, seed=1)}
    data = convert(parts, tmp_path / "digits.npz")
    config = resolve("handwriting", overrides={"data": str(data), "epochs": 1, "steps_per_epoch": 5,
                                               "validation": 0.2, "runs_dir": str(tmp_path / "runs")})
    run = train(config, verbose=0)
    assert np.isfinite(run.history["loss"]).all() and "test_accuracy" in run.metrics
