"""Fuzzing the readers and the preprocessing: bad bytes give a DigitlabError, never a crash.

Every reader may only refuse its input with a `digitlab.errors.DigitlabError` (a clear one-line
message in the CLI); `prepare` returns a result or raises `DataError`. Examples are derandomized
and no example database is kept, so every run (and CI) tries the same inputs.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import digitlab
from conftest import make_digits
from digitlab.data.formats import idx, kaggle_csv, npz
from digitlab.errors import DataError, DigitlabError
from digitlab.preparation import Prepared, prepare

# DIGITLAB_FUZZ_SCALE=10 runs ten times the examples, and with a random seed: for a longer hunt.
_SCALE = int(os.environ.get("DIGITLAB_FUZZ_SCALE", "1"))
FUZZ = settings(
    deadline=None,
    derandomize=_SCALE == 1,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="digitlab-fuzz-") as folder:
        yield Path(folder)


def _fresh(scratch: Path, name: str) -> Path:
    """An empty folder per example, holding a file called `name`."""
    folder = Path(tempfile.mkdtemp(dir=scratch))
    return folder / name


def _only_digitlab_errors(function, *args):
    try:
        return function(*args)
    except DigitlabError:
        return None


# Mutations of valid files


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """`original` with a few bytes flipped, a run deleted or inserted, or cut short."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "overwrite"]))
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "truncate":
            del data[position:]
        else:
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[position : position + len(chunk)] = chunk
    return bytes(data)


def _idx_images(count: int = 3) -> bytes:
    return idx._encode(make_digits(count).images)


def _idx_labels(count: int = 3) -> bytes:
    return idx._encode(make_digits(count).labels.astype(np.uint8))


# IDX


@settings(FUZZ, max_examples=150 * _SCALE)
@given(data=st.binary(max_size=2400), gzipped=st.booleans())
def test_idx_reader_on_arbitrary_bytes(scratch, data, gzipped):
    path = _fresh(scratch, "train-images-idx3-ubyte")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    for read in (idx.read_images, idx.read_labels):
        _only_digitlab_errors(read, path)
    assert idx.kind_of(path) in (None, "images", "labels")


@settings(FUZZ, max_examples=150 * _SCALE)
@given(
    data=st.one_of(mutated(_idx_images()), mutated(_idx_labels()), mutated(gzip.compress(_idx_images(), mtime=0))),
    header=st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
)
def test_idx_reader_on_mutated_files(scratch, data, header):
    if header is not None and len(data) >= 12 and data[:2] == b"\0\0":
        # dimension sizes that promise far more (or wrap around) than the file holds
        data = data[:4] + header[0].to_bytes(4, "big") + header[1].to_bytes(4, "big") + data[12:]
    path = _fresh(scratch, "t10k-images-idx3-ubyte")
    path.write_bytes(data)
    images = _only_digitlab_errors(idx.read_images, path)
    if images is not None:
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
    labels = _only_digitlab_errors(idx.read_labels, path)
    if labels is not None:
        assert labels.dtype == np.int64 and ((labels >= 0) & (labels <= 9)).all()


# Kaggle CSV


def _csv_lines(labelled: bool, rows: int = 2) -> list[str]:
    digits = make_digits(rows)
    header = ",".join((["label"] if labelled else []) + kaggle_csv.PIXEL_COLUMNS)
    lines = [header]
    for image, label in zip(digits.images, digits.labels):
        values = ([str(label)] if labelled else []) + [str(value) for value in image.reshape(-1)]
        lines.append(",".join(values))
    return lines


_TOKENS = st.one_of(
    st.sampled_from(["", "NaN", "nan", "inf", "-1", "256", "1e3", "3.5", " 7", '"5"', "0x1f", "١٢", "10", "9" * 5000,
                     "\x00", "\ufeff"]),
    st.text(max_size=6),
    st.integers(-(10**20), 10**20).map(str),
)


@st.composite
def mutated_csv(draw) -> tuple[bytes, bool]:
    labelled = draw(st.booleans())
    lines = _csv_lines(labelled)
    for _ in range(draw(st.integers(1, 4))):
        line = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["token", "drop", "add", "split", "truncate", "blank", "duplicate"]))
        tokens = lines[line].split(",")
        position = draw(st.integers(0, len(tokens) - 1))
        if kind == "token":
            tokens[position] = draw(_TOKENS)
        elif kind == "drop":
            del tokens[position]
        elif kind == "add":
            tokens.insert(position, draw(_TOKENS))
        elif kind == "split":
            tokens[position] = tokens[position] + "\n" + draw(_TOKENS)
        elif kind == "truncate":
            lines = lines[: line + 1]
            text = ",".join(tokens)
            lines[line] = text[: draw(st.integers(0, len(text)))]
            break
        elif kind == "blank":
            tokens = [""]
        else:
            lines.insert(line, lines[line])
            continue
        lines[line] = ",".join(tokens)
    text = "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n", "\n\n"]))
    encoded = text.encode("utf-8", "surrogatepass") if draw(st.booleans()) else text.encode("utf-8", "replace")
    if draw(st.booleans()):
        encoded = draw(mutated(encoded))
    return encoded, labelled


@settings(FUZZ, max_examples=120 * _SCALE)
@given(case=mutated_csv(), gzipped=st.booleans(), cut=st.none() | st.floats(0, 1))
def test_kaggle_csv_reader_on_mutated_rows(scratch, case, gzipped, cut):
    data, _ = case
    if gzipped:
        data = gzip.compress(data, mtime=0)
        if cut is not None:
            data = data[: int(len(data) * cut)]
    path = _fresh(scratch, "train.csv.gz" if gzipped else "train.csv")
    path.write_bytes(data)
    dataset = _only_digitlab_errors(kaggle_csv.read, path)
    if dataset is not None:
        assert dataset.images.dtype == np.uint8 and dataset.images.shape[1:] == (28, 28)
        if dataset.labels is not None:
            assert ((dataset.labels >= 0) & (dataset.labels <= 9)).all()


@settings(FUZZ, max_examples=60 * _SCALE)
@given(data=st.binary(max_size=4000), name=st.sampled_from(["train.csv", "test.csv", "train.csv.gz"]))
def test_kaggle_csv_reader_on_arbitrary_bytes(scratch, data, name):
    path = _fresh(scratch, name)
    path.write_bytes(data)
    _only_digitlab_errors(kaggle_csv.read, path)


# npz


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


_VALID_NPZ = _npz_bytes(x_train=make_digits(3).images, y_train=make_digits(3).labels)

_ARRAYS = hnp.arrays(
    dtype=st.one_of(
        hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes(),
        hnp.complex_number_dtypes(), hnp.byte_string_dtypes(max_len=3), hnp.unicode_string_dtypes(max_len=3),
        hnp.datetime64_dtypes(),
    ),
    shape=st.one_of(
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
        st.sampled_from([(2, 28, 28), (2, 28, 28, 1), (0, 28, 28), (2, 10), (2,)]),
    ),
)


@settings(FUZZ, max_examples=100 * _SCALE)
@given(data=st.one_of(st.binary(max_size=600), mutated(_VALID_NPZ), mutated(b"PK\x03\x04" + bytes(40))))
def test_npz_reader_on_arbitrary_and_mutated_bytes(scratch, data):
    path = _fresh(scratch, "mnist.npz")
    path.write_bytes(data)
    _only_digitlab_errors(npz.read, path)


@settings(FUZZ, max_examples=100 * _SCALE)
@given(
    arrays=st.dictionaries(
        st.sampled_from(["x_train", "y_train", "x_test", "y_test", "x_", "images", "x_a b"]), _ARRAYS, max_size=4
    )
)
def test_npz_reader_on_arrays_of_any_dtype_and_shape(scratch, arrays):
    path = _fresh(scratch, "mnist.npz")
    path.write_bytes(_npz_bytes(**arrays))
    parts = _only_digitlab_errors(npz.read, path)
    for dataset in (parts or {}).values():
        assert dataset.images.dtype == np.uint8 and dataset.images.shape[1:] == (28, 28)
        if dataset.labels is not None:
            assert dataset.labels.dtype == np.int64 and ((dataset.labels >= 0) & (dataset.labels <= 9)).all()


def test_npz_reader_on_a_single_npy_array(tmp_path):
    path = tmp_path / "mnist.npz"
    with open(path, "wb") as handle:
        np.save(handle, make_digits(2).images)
    with pytest.raises(DataError, match=r"mnist.npz: a single .npy array, not an .npz archive"):
        npz.read(path)


def test_npz_reader_on_a_zip_of_other_files(tmp_path):
    path = tmp_path / "mnist.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"mnist.npz: "):
        npz.read(path)


# load_parts: any content under any name


@settings(FUZZ, max_examples=120 * _SCALE)
@given(
    data=st.one_of(
        st.binary(max_size=1500),
        st.binary(max_size=200).map(lambda tail: b"\0\0\x08\x03" + tail),
        st.binary(max_size=200).map(lambda tail: b"\0\0\x08\x01" + tail),
        st.binary(max_size=200).map(lambda tail: b"\x89PNG\r\n\x1a\n" + tail),
        st.binary(max_size=200).map(lambda tail: b"PK\x03\x04" + tail),
        st.binary(max_size=200).map(lambda tail: b"label,pixel0" + tail),
        st.binary(max_size=200).map(lambda tail: gzip.compress(tail, mtime=0)),
    ),
    stem=st.sampled_from(["train", "test", "t10k-images-idx3-ubyte", "train-labels-idx1-ubyte", "data", "x"]),
    suffix=st.sampled_from(["", ".csv", ".csv.gz", ".gz", ".npz", ".png", ".jpg", ".gif", ".tif", ".idx", ".PNG"]),
)
def test_load_parts_on_random_content_and_names(scratch, data, stem, suffix):
    path = _fresh(scratch, stem + suffix)
    path.write_bytes(data)
    parts = _only_digitlab_errors(digitlab.load_parts, path)
    for dataset in (parts or {}).values():
        assert dataset.images.dtype == np.uint8 and dataset.images.shape[1:] == (28, 28)


# prepare: random small images of every mode, random bytes


def _image(mode: str, width: int, height: int, seed: int, style: str):
    from PIL import Image

    generator = np.random.default_rng(seed)
    if style == "noise":
        grey = generator.integers(0, 256, (height, width), dtype=np.uint8)
    elif style == "flat":
        grey = np.full((height, width), int(generator.integers(0, 256)), np.uint8)
    else:  # a dark bar on paper, the shape of a 1
        grey = np.full((height, width), 230, np.uint8)
        grey[height // 5 : max(height // 5 + 1, 4 * height // 5), width // 2 : width // 2 + max(1, width // 8)] = 20
    image = Image.fromarray(grey, "L")
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257)
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 1000)
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / 255)
    if mode == "RGBA":
        rgba = image.convert("RGBA")
        rgba.putalpha(Image.fromarray(generator.integers(0, 256, (height, width), dtype=np.uint8), "L"))
        return rgba
    if mode == "P":
        return image.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=int(generator.integers(1, 256)))
    return image.convert(mode)


_MODES = ["L", "RGB", "RGBA", "P", "I;16", "CMYK", "1", "LA", "I", "F", "YCbCr"]


@settings(FUZZ, max_examples=60 * _SCALE)
@given(
    mode=st.sampled_from(_MODES),
    width=st.integers(1, 200),
    height=st.integers(1, 200),
    seed=st.integers(0, 2**16),
    style=st.sampled_from(["noise", "flat", "bar"]),
    as_file=st.sampled_from([None, "png", "tiff", "gif", "jpeg", "webp", "bmp"]),
    multi_digit=st.booleans(),
)
def test_prepare_on_random_small_images(mode, width, height, seed, style, as_file, multi_digit):
    image = _image(mode, width, height, seed, style)
    source = image
    if as_file is not None:
        buffer = io.BytesIO()
        try:
            image.save(buffer, format=as_file)
        except (OSError, ValueError, KeyError):
            assume(False)  # Pillow cannot write this mode in this format
        source = buffer.getvalue()
    try:
        prepared = prepare(source, multi_digit=multi_digit)
    except DataError:
        return
    assert isinstance(prepared, Prepared)
    for digit in prepared.digits:
        assert digit.dtype == np.uint8 and digit.shape == (28, 28)
    assert multi_digit or len(prepared.digits) <= 1


@settings(FUZZ, max_examples=100 * _SCALE)
@given(
    data=st.one_of(
        st.binary(max_size=800),
        st.binary(max_size=300).map(lambda tail: b"\x89PNG\r\n\x1a\n" + tail),
        st.binary(max_size=300).map(lambda tail: b"GIF89a" + tail),
        st.binary(max_size=300).map(lambda tail: b"\xff\xd8\xff" + tail),
        st.binary(max_size=300).map(lambda tail: b"II*\x00" + tail),
        st.binary(max_size=300).map(lambda tail: b"BM" + tail),
    )
)
def test_prepare_on_random_bytes(data):
    try:
        prepared = prepare(data)
    except DataError:
        return
    assert isinstance(prepared, Prepared)


@settings(FUZZ, max_examples=60 * _SCALE)
@given(
    original=st.sampled_from(["png", "jpeg", "gif", "tiff", "bmp", "webp"]),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_prepare_on_mutated_image_files(original, seed, data):
    buffer = io.BytesIO()
    _image("RGB" if original != "gif" else "P", 40, 30, seed, "bar").save(buffer, format=original)
    damaged = data.draw(mutated(buffer.getvalue()))
    try:
        prepared = prepare(damaged)
    except DataError:
        return
    assert isinstance(prepared, Prepared)


@settings(FUZZ, max_examples=25 * _SCALE)
@given(width=st.integers(60, 900), height=st.integers(60, 700), dot=st.integers(1, 6),
       across=st.integers(2, 12), down=st.integers(2, 24), dark=st.booleans())
def test_images_of_many_pieces_give_a_bounded_reading(width, height, dot, across, down, dark):
    from digitlab.preparation import MAX_DIGITS

    page = np.full((height, width), 255 if dark else 0, np.uint8)
    for top in range(0, height, down):
        for left in range(0, width, across):
            page[top : top + dot, left : left + dot] = 0 if dark else 255
    prepared = prepare(page_png(page))
    assert isinstance(prepared, Prepared) and len(prepared.digits) <= MAX_DIGITS
    assert all(digit.shape == (28, 28) for digit in prepared.digits)


def page_png(page: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(page).save(buffer, "PNG")
    return buffer.getvalue()


_MARKUP_TEXT = st.text(alphabet="[]/abx =#@:", min_size=1, max_size=12).filter(lambda text: text.strip("/") == text)


@settings(FUZZ, max_examples=30 * _SCALE, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(name=_MARKUP_TEXT)
def test_file_names_with_markup_characters_print_as_they_are(tmp_path, run_cli, name):
    assume("/" not in name and name not in (".", ".."))
    path = tmp_path / f"{name}.npz"
    if not path.exists():
        npz.write(path, {"train": make_digits(10)})
    shown = run_cli("data", "info", path)
    assert shown.code == 0, shown.err
    assert f"{name}.npz" in shown.out.replace("\n", "")
    missing = run_cli("data", "info", tmp_path / f"{name}-gone.npz")
    assert missing.code == 1 and f"{name}-gone.npz" in missing.err.replace("\n", "")
