"""Preparation of digits captured in other ways than MNIST's: tight crops that the digit fills or
touches, tiny 8x8 and 16x16 scans, binary images, either polarity, ruled lines and printed boxes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from test_preprocess import STROKES, aligned_correlation, centre_of_mass, mnist_like

from digitlab.preparation import prepare


@pytest.fixture(scope="module")
def originals() -> dict[int, np.ndarray]:
    return {digit: mnist_like(strokes) for digit, strokes in STROKES.items()}


def ink_box(digit: np.ndarray) -> np.ndarray:
    rows, columns = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    return digit[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].astype(np.float32) / 255


def resized(ink: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray(ink, "F").resize((width, height), Image.Resampling.BOX)
    return np.clip(np.asarray(image, dtype=np.float32), 0, 1)


def tight_crop(digit: np.ndarray, side: int, stretch: bool = False) -> np.ndarray:
    """Ink of the digit filling a side x side box: its longer side fills it, or both with `stretch`."""
    box = ink_box(digit)
    if stretch:
        return resized(box, side, side)
    scale = side / max(box.shape)
    width, height = max(1, round(box.shape[1] * scale)), max(1, round(box.shape[0] * scale))
    crop = np.zeros((side, side), dtype=np.float32)
    left, top = (side - width) // 2, (side - height) // 2
    crop[top : top + height, left : left + width] = resized(box, width, height)
    return crop


def png(ink: np.ndarray, dark_on_light: bool, paper: float = 0.9, ink_level: float = 0.1) -> bytes:
    if not dark_on_light:
        paper, ink_level = 1 - paper, 1 - ink_level
    grey = paper + (ink_level - paper) * ink
    buffer = io.BytesIO()
    Image.fromarray(np.round(grey * 255).astype(np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def the_one_digit(data: bytes) -> np.ndarray:
    """The single digit `prepare` finds, checked to be MNIST-shaped: 28x28, centred, peak 255."""
    prepared = prepare(data)
    assert len(prepared.digits) == 1, f"expected one digit, found {len(prepared.digits)}"
    digit = prepared.digits[0]
    row, column = centre_of_mass(digit)
    assert abs(row - 14) <= 1.5 and abs(column - 14) <= 1.5
    assert digit.max() == 255
    rows, columns = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    assert max(rows[-1] - rows[0], columns[-1] - columns[0]) + 1 <= 21  # the longer side in 20 pixels
    return digit


@pytest.mark.parametrize("dark_on_light", [True, False])
@pytest.mark.parametrize("digit", sorted(STROKES))
def test_a_digit_filling_a_tight_16x16_crop_is_read(originals, digit, dark_on_light):
    prepared = the_one_digit(png(tight_crop(originals[digit], 16), dark_on_light))
    assert aligned_correlation(originals[digit], prepared) > 0.75


@pytest.mark.parametrize("dark_on_light", [True, False])
@pytest.mark.parametrize("digit", sorted(STROKES))
def test_a_tiny_8x8_digit_is_read(originals, digit, dark_on_light):
    prepared = the_one_digit(png(tight_crop(originals[digit], 8), dark_on_light, paper=1.0, ink_level=0.0))
    assert aligned_correlation(originals[digit], prepared) > 0.6


@pytest.mark.parametrize("digit", sorted(STROKES))
def test_a_binary_digit_stretched_to_fill_its_box_is_one_digit(originals, digit):
    binary = (tight_crop(originals[digit], 16, stretch=True) >= 0.5).astype(np.float32)
    prepared = the_one_digit(png(binary, dark_on_light=True, paper=1.0, ink_level=0.0))
    stretched_back = np.asarray(
        Image.fromarray(prepared).resize((28, 28)), dtype=np.float32
    )  # the stretch is the capture's: only the digit's presence and place are checked here
    assert (stretched_back > 0).mean() > 0.1


@pytest.mark.parametrize("digit", [0, 3, 7])
def test_a_digit_touching_the_frame_is_read_whole(originals, digit):
    """The crop ends where the digit does at the top, bottom and right: its ink is still ink."""
    big = np.clip(np.asarray(Image.fromarray(originals[digit]).resize((56, 56), Image.Resampling.BICUBIC),
                             np.float32) / 255, 0, 1)
    rows, columns = np.flatnonzero(big.max(1) > 0.05), np.flatnonzero(big.max(0) > 0.05)
    crop = big[rows[0] : rows[-1] + 1, columns[0] - 8 : columns[-1] + 1]
    prepared = the_one_digit(png(crop, dark_on_light=True))
    assert aligned_correlation(originals[digit], prepared) > 0.7


def test_a_ruled_line_and_a_printed_box_are_not_read_as_ink(originals):
    ink = np.zeros((100, 100), dtype=np.float32)
    digit = np.asarray(Image.fromarray(originals[3]).resize((84, 84), Image.Resampling.BICUBIC), np.float32) / 255
    ink[8:92, 8:92] = np.clip(digit, 0, 1)
    ink[:2, :] = ink[-2:, :] = ink[:, :2] = ink[:, -2:] = 0.8  # the form's box
    ink[85:87, :] = 0.8  # a ruled line
    prepared = the_one_digit(png(ink, dark_on_light=True))
    assert aligned_correlation(originals[3], prepared) > 0.75


def test_specks_and_a_blank_crop_give_no_digit():
    blank = np.zeros((16, 16), dtype=np.float32)
    assert prepare(png(blank, dark_on_light=True)).digits == []
    assert prepare(png(blank, dark_on_light=False)).digits == []
    noise = np.random.default_rng(0).normal(0, 0.01, (32, 32)).clip(0, 1).astype(np.float32)
    assert prepare(png(noise, dark_on_light=True)).digits == []


def test_a_page_of_many_marks_gives_at_most_the_digit_limit():
    """Hundreds of digit-sized marks: each image's work and answer stay bounded."""
    from PIL import ImageDraw

    from digitlab.preparation import MAX_DIGITS

    page = Image.new("L", (900, 600), 255)
    draw = ImageDraw.Draw(page)
    for top in range(10, 580, 30):
        for left in range(10, 880, 14):
            draw.line([(left, top), (left + 3, top + 20)], fill=0, width=3)
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    prepared = prepare(buffer.getvalue())
    assert 0 < len(prepared.digits) <= MAX_DIGITS
    assert len(prepared.boxes) == len(prepared.digits)


def test_bold_binary_ink_covering_half_the_image_is_still_the_ink():
    """A binary 1 stretched into a slanted block covers over half of its 16x16 scan; the paper is
    still told from the ink (by the rim, which the paper holds), so the block is the digit."""
    rows, columns = np.mgrid[0:16, 0:16]
    block = (np.abs((rows + columns) - 15) <= 5).astype(np.float32)  # from bottom left to top right
    assert block.mean() > 0.5
    prepared = the_one_digit(png(block, dark_on_light=True, paper=1.0, ink_level=0.0))
    ink_rows, ink_columns = np.flatnonzero(prepared.any(1)), np.flatnonzero(prepared.any(0))
    box = prepared[ink_rows[0] : ink_rows[-1] + 1, ink_columns[0] : ink_columns[-1] + 1].astype(float)
    assert box[:3, -3:].mean() > 200 and box[:3, :3].mean() < 50  # ink at top right, paper at top left


@pytest.mark.mnist
def test_numbers_photographed_keep_their_digit_count(mnist_folder):
    """MNIST's digits written across a photo, close together: line finding must not cut them."""
    from test_preprocess import photo_of, strip_of

    from digitlab.data.sources import load

    test = load(mnist_folder, "test")
    generator = np.random.default_rng(0)
    wrong = []
    for seed in range(30):
        chosen = generator.choice(len(test), size=int(generator.integers(3, 7)), replace=False)
        photo = photo_of(strip_of(list(test.images[chosen]), gap=int(generator.integers(3, 9))),
                         factor=float(generator.uniform(4, 10)), seed=seed)
        if len(prepare(photo).digits) != len(chosen):
            wrong.append(seed)
    assert len(wrong) <= 1, f"numbers read with the wrong count of digits: seeds {wrong}"
