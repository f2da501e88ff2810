"""MNIST-style preparation of people's own digits: photos, scans, drawings, in every image form."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from digitlab.data.formats.image_folder import read_image
from digitlab.errors import DataError
from digitlab.preparation import open_image, prepare, segment, to_grey_ink, to_mnist
from digitlab.recognition.readings import read

# Digits as pen strokes in a unit box (x right, y down): polylines.
STROKES = {
    0: [[(0.6, 0.0), (0.25, 0.1), (0.1, 0.5), (0.3, 0.97), (0.7, 0.97), (0.9, 0.5), (0.75, 0.1), (0.45, 0.03)]],
    1: [[(0.55, 0.0), (0.45, 1.0)]],
    2: [[(0.1, 0.25), (0.3, 0.04), (0.7, 0.04), (0.9, 0.25), (0.85, 0.45), (0.1, 1.0), (0.95, 1.0)]],
    3: [[(0.1, 0.05), (0.85, 0.05), (0.45, 0.45), (0.85, 0.65), (0.85, 0.9), (0.6, 1.0), (0.1, 0.95)]],
    4: [[(0.6, 0.0), (0.05, 0.65), (0.95, 0.65)], [(0.7, 0.25), (0.7, 1.0)]],
    5: [[(0.9, 0.0), (0.25, 0.0), (0.2, 0.45), (0.7, 0.4), (0.9, 0.7), (0.7, 1.0), (0.1, 0.95)]],
    6: [[(0.75, 0.0), (0.3, 0.35), (0.15, 0.7), (0.3, 0.97), (0.7, 0.97), (0.85, 0.7), (0.6, 0.5), (0.2, 0.6)]],
    7: [[(0.05, 0.0), (0.95, 0.0), (0.35, 1.0)]],
}
# A 4 whose upright stroke is broken twice, and a 5 whose hat is lifted off its body.
BROKEN_FOUR = [[(0.6, 0.0), (0.05, 0.65), (0.95, 0.65)], [(0.7, 0.2), (0.7, 0.52)], [(0.7, 0.8), (0.7, 1.0)]]
HATLESS_FIVE = [[(0.9, 0.0), (0.3, 0.0)],
                [(0.22, 0.14), (0.2, 0.45), (0.7, 0.4), (0.9, 0.7), (0.7, 1.0), (0.1, 0.95)]]


def draw_strokes(strokes, box_side: int, width: float, aspect: float = 0.7) -> np.ndarray:
    """Float ink (1 = ink) of the strokes drawn box_side high, aspect * box_side wide, plus margins."""
    pad = int(width) + 2
    box_width = int(box_side * aspect)
    canvas = Image.new("L", (box_width + 2 * pad, box_side + 2 * pad), 0)
    draw = ImageDraw.Draw(canvas)

    def point(x: float, y: float) -> tuple[float, float]:
        return (pad + x * box_width, pad + y * box_side)

    for stroke in strokes:
        draw.line([point(*xy) for xy in stroke], fill=255, width=int(width), joint="curve")
        for xy in (stroke[0], stroke[-1]):  # round pen ends
            x, y = point(*xy)
            draw.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=255)
    return np.asarray(canvas, dtype=np.float32) / 255


def mnist_like(strokes) -> np.ndarray:
    """As MNIST made its digits: drawn sharp, longer side scaled to 20 px, centred by mass in 28x28."""
    ink = draw_strokes(strokes, 200, width=24)
    rows, columns = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    ink = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    scale = 20 / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    small = np.asarray(Image.fromarray(ink, "F").resize(size, Image.Resampling.BOX))
    result = np.zeros((28, 28), dtype=np.float32)
    top, left = (int(np.floor(14 - centre + 0.5)) for centre in centre_of_mass(small))
    result[top : top + small.shape[0], left : left + small.shape[1]] = small
    return np.round(np.clip(result, 0, 1) * 255).astype(np.uint8)


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    image = np.asarray(image, dtype=np.float64)
    mass = image.sum()
    return (image.sum(1) @ np.arange(image.shape[0]) / mass, image.sum(0) @ np.arange(image.shape[1]) / mass)


def aligned_correlation(first: np.ndarray, second: np.ndarray, reach: int = 2) -> float:
    """The best correlation of the two images over shifts of up to `reach` pixels."""
    a = first.astype(np.float64) - first.mean()
    best = -1.0
    for down in range(-reach, reach + 1):
        for across in range(-reach, reach + 1):
            b = np.roll(second, (down, across), axis=(0, 1)).astype(np.float64)
            b -= b.mean()
            best = max(best, float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())))
    return best


def strip_of(digits: list[np.ndarray], gap: int = 6) -> np.ndarray:
    parts = [np.zeros((28, 4), np.uint8)]
    for digit in digits:
        columns = np.flatnonzero(digit.any(0))
        parts += [digit[:, columns[0] : columns[-1] + 1], np.zeros((28, gap), np.uint8)]
    return np.hstack(parts)


def photo_of(
    digits: np.ndarray, factor: float = 6.0, seed: int = 0, dark_ink: bool = True, quality: int = 80
) -> bytes:
    """A JPEG of white-on-black digits as a phone photo: ink on a larger page, off-centre,
    upscaled, lit unevenly, slightly blurred and noisy (or light chalk on a dark board)."""
    generator = np.random.default_rng(seed)
    size = (round(digits.shape[1] * factor), round(digits.shape[0] * factor))
    ink = np.clip(np.asarray(Image.fromarray(digits).resize(size, Image.Resampling.BICUBIC), np.float32) / 255, 0, 1)
    page = np.full((int(ink.shape[0] * 1.8), int(ink.shape[1] * 1.6)), 0.88 if dark_ink else 0.2, np.float32)
    top = int(generator.integers(0, page.shape[0] - ink.shape[0]))
    left = int(generator.integers(0, page.shape[1] - ink.shape[1]))
    target = 0.12 if dark_ink else 0.85
    page[top : top + ink.shape[0], left : left + ink.shape[1]] += (target - page[0, 0]) * ink
    rows, columns = np.meshgrid(np.linspace(0, 1, page.shape[0]), np.linspace(0, 1, page.shape[1]), indexing="ij")
    page *= 1 - 0.4 * (0.6 * columns + 0.4 * rows)  # light falling off towards one corner
    blurred = Image.fromarray(np.clip(page * 255, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    noisy = np.asarray(blurred, np.float32) + generator.normal(0, 6, page.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def assert_recovers(prepared_digit: np.ndarray, original: np.ndarray, correlation: float = 0.8) -> None:
    assert prepared_digit.shape == (28, 28) and prepared_digit.dtype == np.uint8
    assert aligned_correlation(original, prepared_digit) > correlation
    row, column = centre_of_mass(prepared_digit)
    assert abs(row - 14) <= 1 and abs(column - 14) <= 1
    assert prepared_digit.max() == 255 and prepared_digit[0].max() == 0


@pytest.fixture(scope="module")
def originals() -> dict[int, np.ndarray]:
    return {digit: mnist_like(strokes) for digit, strokes in STROKES.items()}


@pytest.mark.parametrize("digit, factor, seed", [(2, 4, 0), (4, 7, 1), (6, 10, 2), (7, 5, 3)])
def test_photo_of_dark_ink_on_paper_gives_the_digit_back(originals, digit, factor, seed):
    prepared = prepare(photo_of(originals[digit], factor, seed))
    assert len(prepared.digits) == 1
    assert_recovers(prepared.digits[0], originals[digit])


def test_light_ink_on_a_dark_board_gives_the_digit_back(originals):
    prepared = prepare(photo_of(originals[3], 6, seed=4, dark_ink=False))
    assert len(prepared.digits) == 1
    assert_recovers(prepared.digits[0], originals[3])


@pytest.mark.parametrize("sheet", [(100, 850, 250, 1000), (30, 880, 100, 1150)], ids=["half", "most"])
def test_a_sheet_of_paper_on_a_dark_table(originals, sheet):
    ink = draw_strokes(STROKES[4], 300, width=24)
    page = np.full((900, 1200), 0.25, np.float32)
    top, bottom, left, right = sheet
    page[top:bottom, left:right] = 0.85
    page[300 : 300 + ink.shape[0], 450 : 450 + ink.shape[1]] -= 0.7 * ink
    page += np.random.default_rng(14).normal(0, 0.015, page.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(page * 255, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
    prepared = prepare(buffer.getvalue())
    assert len(prepared.digits) == 1
    assert_recovers(prepared.digits[0], originals[4])


def test_ruled_paper_lines_are_not_the_digit(originals):
    ink = draw_strokes(STROKES[7], 200, width=16)
    page = np.full((500, 700), 0.9, np.float32)
    for row in range(40, 500, 60):  # grey rules, one crossing the 7
        page[row : row + 3] = 0.65
    page[130 : 130 + ink.shape[0], 250 : 250 + ink.shape[1]] -= 0.75 * ink
    prepared = prepare(Image.fromarray(np.round(np.clip(page, 0, 1) * 255).astype(np.uint8)))
    assert len(prepared.digits) == 1
    assert_recovers(prepared.digits[0], originals[7])
    assert prepared.boxes[0].width < 250


def test_drawing_page_canvas_white_on_black(originals):
    ink = draw_strokes(STROKES[2], 200, width=20)
    canvas = np.zeros((280, 280), np.float32)
    canvas[20 : 20 + ink.shape[0], 50 : 50 + ink.shape[1]] = ink
    (digit,) = prepare(Image.fromarray(np.round(canvas * 255).astype(np.uint8)).convert("RGB")).digits
    assert_recovers(digit, originals[2], correlation=0.9)


def test_boxes_are_in_the_original_images_pixels(originals):
    photo = photo_of(originals[7], factor=8, seed=5)
    prepared = prepare(photo)
    width, height = Image.open(io.BytesIO(photo)).size
    assert prepared.size == (width, height)
    (box,) = prepared.boxes
    assert 0 <= box.left < box.right <= width and 0 <= box.top < box.bottom <= height
    assert 0.6 * 20 * 8 <= box.height <= 1.3 * 28 * 8  # the 7 is about 20 px of 28, upscaled 8x


def test_mnist_style_images_come_out_unchanged(originals):
    for original in originals.values():
        prepared = prepare(Image.fromarray(original), multi_digit=False)
        difference = np.abs(prepared.digits[0].astype(int) - original)
        assert difference.max() <= 16 and difference.mean() < 1


@pytest.mark.mnist
def test_real_mnist_test_digits_come_out_nearly_unchanged(mnist_folder):
    from digitlab.data.formats import idx

    images = idx.read_images(mnist_folder / "t10k-images-idx3-ubyte.gz")[:300]
    differences = []
    for pixels in images:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        (digit,) = prepare(buffer.getvalue(), multi_digit=False).digits
        differences.append(np.abs(digit.astype(int) - pixels).mean())
        assert aligned_correlation(pixels, digit, reach=0) > 0.97
    assert np.mean(differences) < 1


def rgba_drawing(strokes, colour: tuple[int, int, int]) -> Image.Image:
    """Strokes of one colour on a fully transparent canvas, as a drawing page exports them."""
    alpha = np.round(draw_strokes(strokes, 240, width=22) * 255).astype(np.uint8)
    rgb = np.zeros((*alpha.shape, 3), np.uint8) + np.array(colour, np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0), (30, 60, 200)], ids=["white", "black", "blue"])
def test_drawing_on_a_transparent_canvas_reads_its_strokes(tmp_path, originals, colour):
    path = tmp_path / "drawing.png"
    rgba_drawing(STROKES[5], colour).save(path)
    prepared = prepare(path)
    assert len(prepared.digits) == 1
    assert_recovers(prepared.digits[0], originals[5])


def test_transparent_padding_around_a_photo_is_paper(originals):
    photo = Image.open(io.BytesIO(photo_of(originals[2], 5, seed=6))).convert("RGBA")
    padded = Image.new("RGBA", (photo.width + 200, photo.height + 100), (0, 0, 0, 0))
    padded.paste(photo, (100, 50))
    prepared = prepare(padded)
    assert len(prepared.digits) == 1
    assert_recovers(prepared.digits[0], originals[2])


@pytest.mark.parametrize("orientation, stored", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                                 (3, Image.Transpose.ROTATE_180)])
def test_exif_orientation_is_applied(tmp_path, originals, orientation, stored):
    upright = Image.open(io.BytesIO(photo_of(originals[7], 5, seed=7)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.jpg"
    upright.transpose(stored).save(path, exif=exif, quality=90)
    assert open_image(path).size == upright.size
    (digit,) = prepare(path).digits
    assert_recovers(digit, originals[7])


def grey_photo(originals, digit: int = 4) -> Image.Image:
    return Image.open(io.BytesIO(photo_of(originals[digit], 5, seed=8))).convert("L")


@pytest.mark.parametrize("form", ["16-bit", "cmyk", "palette", "bilevel", "grey-alpha", "webp", "tiff", "bmp"])
def test_image_modes_and_formats(tmp_path, originals, form):
    grey = grey_photo(originals)
    if form == "16-bit":
        image, name = Image.fromarray(np.asarray(grey, np.uint16) * 257), "deep.png"
    elif form == "cmyk":
        image, name = grey.convert("RGB").convert("CMYK"), "print.jpg"
    elif form == "palette":
        image, name = grey.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "palette.png"
    elif form == "bilevel":
        image, name = grey.point(lambda value: 255 if value > 90 else 0).convert("1"), "fax.png"
    elif form == "grey-alpha":
        image, name = grey.convert("LA"), "grey-alpha.png"
    else:
        image, name = grey.convert("RGB"), f"photo.{form}"
    path = tmp_path / name
    image.save(path)
    if form == "16-bit":
        assert Image.open(path).mode.startswith("I")
    (digit,) = prepare(path).digits
    assert_recovers(digit, originals[4], correlation=0.75 if form == "bilevel" else 0.8)


def test_animated_gif_gives_its_first_frame(tmp_path, originals):
    frames = [grey_photo(originals, 7).convert("P"), grey_photo(originals, 2).convert("P")]
    path = tmp_path / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=200, loop=0)
    (digit,) = prepare(path).digits
    assert aligned_correlation(originals[7], digit) > 0.8
    assert aligned_correlation(originals[7], digit) > aligned_correlation(originals[2], digit)


def noisy_page(seed: int, specks: int = 0) -> bytes:
    generator = np.random.default_rng(seed)
    rows, columns = np.meshgrid(np.linspace(0, 1, 480), np.linspace(0, 1, 640), indexing="ij")
    page = 215 * (1 - 0.35 * columns * rows) + generator.normal(0, 8, rows.shape)
    for _ in range(specks):  # dust: dots of 2-3 pixels
        row, column = generator.integers(10, 470), generator.integers(10, 630)
        page[row : row + 3, column : column + 2] = 40
    buffer = io.BytesIO()
    Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


@pytest.mark.parametrize("make", [
    lambda: Image.new("L", (300, 200), 255),
    lambda: Image.new("RGB", (300, 200), (0, 0, 0)),
    lambda: Image.new("L", (28, 28), 0),
    lambda: Image.new("RGBA", (100, 100), (0, 0, 0, 0)),
    lambda: noisy_page(0),
    lambda: noisy_page(1, specks=6),
], ids=["white", "black", "black-28x28", "transparent", "noise-only", "dust-specks"])
def test_blank_and_noise_only_images_give_no_digits(make):
    prepared = prepare(make())
    assert prepared.digits == [] and prepared.boxes == [] and not prepared.found
    reading = read(lambda images: pytest.fail("the model must not be asked"), make())
    assert reading.text == "" and not reading.found and reading.confidence == 0.0


def test_strip_of_four_digits_gives_four_boxes_left_to_right(originals):
    digits = [originals[2], originals[0], originals[2], originals[6]]
    prepared = prepare(photo_of(strip_of(digits), factor=6, seed=9))
    assert len(prepared.boxes) == 4
    lefts = [box.left for box in prepared.boxes]
    assert lefts == sorted(lefts)
    assert all(first.right <= second.left for first, second in zip(prepared.boxes, prepared.boxes[1:]))
    for digit, original in zip(prepared.digits, digits):
        assert_recovers(digit, original)
    assert len(prepare(photo_of(strip_of(digits), factor=6, seed=9), multi_digit=False).digits) == 1


@pytest.mark.parametrize("strokes, digit", [(BROKEN_FOUR, 4), (HATLESS_FIVE, 5)], ids=["broken-four", "hatless-five"])
def test_pieces_of_one_digit_are_merged(strokes, digit, originals):
    ink = draw_strokes(strokes, 300, width=30)
    assert len(segment(ink)) == 1
    photo = photo_of(np.round(ink * 255).astype(np.uint8), factor=1, seed=10)
    (prepared,) = prepare(photo).digits
    assert aligned_correlation(originals[digit], prepared) > 0.75


def test_a_thin_pen_is_thickened_to_mnist_strokes(originals):
    ink = draw_strokes(STROKES[3], 500, width=4)
    paper = Image.fromarray(np.round(235 - 200 * ink).astype(np.uint8))
    (digit,) = prepare(paper).digits
    strong = digit >= 128
    perimeter = sum(np.abs(np.diff(np.pad(strong, 1).astype(int), axis=axis)).sum() for axis in (0, 1))
    assert 2 * strong.sum() / perimeter >= 1.3  # MNIST's median is 2.0; a 4 px pen at 500 px gives 0.16
    assert aligned_correlation(originals[3], digit) > 0.75


def test_to_grey_ink_keeps_grey_levels_and_zeroes_the_background(originals):
    ink = to_grey_ink(open_image(photo_of(originals[0], 6, seed=11)))
    assert ink.dtype == np.float32 and ink.min() == 0 and ink.max() == 1
    inked = ink[ink > 0]
    assert 0.05 < inked.size / ink.size < 0.5
    assert ((inked > 0.1) & (inked < 0.9)).mean() > 0.1  # anti-aliased edges, not a hard binary
    assert np.median(ink) == 0


def test_to_mnist_fits_the_longer_side_into_20_pixels():
    bar = np.zeros((300, 60), np.float32)
    bar[10:290, 20:40] = 1
    digit = to_mnist(bar)
    rows, columns = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    assert rows[-1] - rows[0] + 1 == 20 and columns[-1] - columns[0] + 1 <= 3
    assert centre_of_mass(digit) == pytest.approx((14, 14), abs=0.5)
    assert not to_mnist(np.zeros((40, 40))).any()


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header promising `width` x `height` grey pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(1000)))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height", [(8000, 6000), (40000, 40000)], ids=["48-megapixels", "bomb"])
def test_huge_images_and_decompression_bombs_are_refused(tmp_path, width, height):
    path = tmp_path / "huge.png"
    path.write_bytes(bomb_png(width, height))
    with pytest.raises(DataError, match=r"huge.png: refused: .*(40-megapixel limit|decompression bomb)"):
        prepare(path)


def test_unreadable_images_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "digit.jpg"
    path.write_bytes(b"not a picture at all")
    with pytest.raises(DataError, match=r"digit.jpg: not an image, or a damaged one"):
        prepare(path)
    with pytest.raises(DataError, match=r"^not an image, or a damaged one$"):
        open_image(b"\x00\x01\x02")
    with pytest.raises(DataError, match=r"nowhere.png: no such file"):
        prepare(tmp_path / "nowhere.png")


def fake_model(digits: list[int]):
    """A predict function that reads the given digits in turn, surest of the first."""
    calls = []

    def predict(images: np.ndarray) -> np.ndarray:
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
        calls.append(len(images))
        probabilities = np.full((len(images), 10), 0.01)
        for row, digit in enumerate(digits[: len(images)]):
            probabilities[row, digit] = 0.9 - 0.1 * row
            probabilities[row, (digit + 1) % 10] = 0.05 + 0.1 * row
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    predict.calls = calls
    return predict


def test_read_gives_text_confidences_and_debug_images(tmp_path, originals):
    photo = tmp_path / "year.jpg"
    photo.write_bytes(photo_of(strip_of([originals[2], originals[0], originals[2], originals[6]]), 5, seed=12))
    model = fake_model([2, 0, 2, 6])
    reading = read(model, photo, debug_dir=tmp_path / "debug")
    assert model.calls == [4]
    assert reading.text == "2026" and reading.found and reading.source == str(photo)
    assert reading.confidence == pytest.approx(np.prod([digit.confidence for digit in reading.digits]))
    for digit in reading.digits:
        probabilities = [probability for _, probability in digit.top3]
        assert probabilities == sorted(probabilities, reverse=True) and digit.top3[0] == (digit.digit, digit.confidence)
        assert digit.pixels.shape == (28, 28)
    assert reading.digits[1].top3[1][0] == 1
    as_json = json.loads(json.dumps(reading.as_dict()))
    assert as_json["text"] == "2026" and "pixels" not in as_json["digits"][0]
    assert len(reading.as_dict(include_pixels=True)["digits"][0]["pixels"]) == 28
    for index in range(4):
        saved = np.asarray(Image.open(tmp_path / "debug" / f"year-digit-{index}.png"))
        assert np.array_equal(saved, reading.digits[index].pixels)
        assert (tmp_path / "debug" / f"year-digit-{index}-large.png").is_file()
    assert (tmp_path / "debug" / "year-ink.png").is_file()
    again = read(fake_model([2, 0, 2, 6]), photo, debug_dir=tmp_path / "debug")  # overwrites its own files
    assert again.text == "2026"
    single = read(fake_model([2]), photo.read_bytes(), multi_digit=False)
    assert single.text == "2" and single.source == "<bytes>"


def test_read_refuses_a_predict_function_of_the_wrong_shape(originals):
    with pytest.raises(ValueError, match=r"expected \(1, 10\) probabilities"):
        read(lambda images: np.ones((len(images), 9)), Image.fromarray(originals[7]))


def test_image_folders_prepare_photos_and_refuse_blank_ones(tmp_path, originals):
    (tmp_path / "photo.jpg").write_bytes(photo_of(originals[6], 6, seed=13))
    assert_recovers(read_image(tmp_path / "photo.jpg"), originals[6])
    Image.new("RGB", (64, 48), "white").save(tmp_path / "blank.jpg")
    with pytest.raises(DataError, match=r"blank.jpg: no digit found"):
        read_image(tmp_path / "blank.jpg")
    Image.fromarray(originals[1]).save(tmp_path / "as-is.png")
    assert np.array_equal(read_image(tmp_path / "as-is.png"), originals[1])  # 28x28 white on black: as it is
    Image.fromarray(255 - originals[1]).save(tmp_path / "dark-on-light.png")
    assert_recovers(read_image(tmp_path / "dark-on-light.png"), originals[1])  # prepared, not taken as it is


def test_an_mnist_digit_is_read_as_it_is(originals):
    digit = originals[3]
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, "PNG")
    prepared = prepare(buffer.getvalue())
    assert len(prepared.digits) == 1 and np.array_equal(prepared.digits[0], digit)
    assert prepared.boxes[0].as_tuple() == (0, 0, 28, 28)


@pytest.mark.parametrize("change", ["off centre", "dark ink on white"])
def test_a_28x28_image_not_in_mnist_form_is_prepared(originals, change):
    digit = originals[3].copy()
    if change == "off centre":
        image = Image.fromarray(np.roll(digit, 5, axis=1))
    else:
        image = Image.fromarray(255 - digit)
    prepared = prepare(image)
    assert len(prepared.digits) == 1
    assert not np.array_equal(prepared.digits[0], np.asarray(image))
    assert_recovers(prepared.digits[0], digit, correlation=0.95)  # centred, white on black


def small_grey_scan(original: np.ndarray) -> Image.Image:
    """An MNIST digit as a tight 20x24 grey scan, dark on light."""
    return Image.fromarray(255 - original).crop((4, 2, 24, 26))


def test_grey_png_scans_read_the_same_as_through_pillow(tmp_path, originals):
    for digit, original in list(originals.items())[:4]:
        scan = small_grey_scan(original)
        path = tmp_path / f"{digit}.png"
        scan.save(path)
        from_file, from_pillow = prepare(path), prepare(Image.open(path))
        assert [box.as_tuple() for box in from_file.boxes] == [box.as_tuple() for box in from_pillow.boxes]
        assert np.array_equal(np.stack(from_file.digits), np.stack(from_pillow.digits))
        assert_recovers(from_file.digits[0], original)


def test_grey_pngs_with_transparency_or_exif_read_as_through_pillow(tmp_path, originals):
    scan = small_grey_scan(originals[3])
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown a quarter turn clockwise
    for name, options in (("transparent.png", {"transparency": 255}), ("turned.png", {"exif": exif})):
        path = tmp_path / name
        scan.save(path, **options)
        from_file, from_pillow = prepare(path), prepare(Image.open(path))
        assert from_file.size == from_pillow.size
        assert np.array_equal(np.stack(from_file.digits), np.stack(from_pillow.digits))
    assert prepare(tmp_path / "turned.png").size == (scan.height, scan.width)


def test_a_damaged_grey_png_is_named(tmp_path, originals):
    buffer = io.BytesIO()
    small_grey_scan(originals[5]).save(buffer, format="PNG")
    path = tmp_path / "cut-short.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(DataError, match="cut-short.png"):
        prepare(path)
