"""Bad input gets one clear message naming the file and the place, from the library and the CLI."""

import gzip
import struct

import numpy as np
import pytest

import digitlab
from conftest import make_digits
from digitlab.data.formats import idx, kaggle_csv
from digitlab.errors import DataError

HEADER = "label," + ",".join(f"pixel{i}" for i in range(784))


def csv_row(label=3, pixel=0, count=784):
    return ",".join([str(label)] + [str(pixel)] * count)


def write_csv(folder, *lines, name="train.csv"):
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def idx_header(magic, *dimensions):
    return struct.pack(">I", magic) + struct.pack(f">{len(dimensions)}I", *dimensions)


def wrong_magic(folder):
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + bytes(100))
    return path


def wrong_dimensions(folder):
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_header(0x803, 2, 32, 32) + bytes(2 * 32 * 32)))
    return path


def truncated_idx(folder):
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(idx_header(0x803, 10, 28, 28) + bytes(784 * 3))
    return path


def truncated_gzip(folder):
    path = folder / "train-images-idx3-ubyte.gz"
    data = gzip.compress(idx_header(0x803, 5, 28, 28) + np.random.default_rng(0).bytes(784 * 5))
    path.write_bytes(data[: len(data) // 2])
    return path


def counts_differ(folder):
    digits = make_digits(10)
    idx.write_images(folder / "train-images-idx3-ubyte.gz", digits.images)
    idx.write_labels(folder / "train-labels-idx1-ubyte.gz", digits.labels[:9])
    return folder


def idx_label_out_of_range(folder):
    digits = make_digits(10)
    idx.write_images(folder / "train-images-idx3-ubyte.gz", digits.images)
    labels = digits.labels.copy()
    labels[6] = 11
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_header(0x801, 10) + labels.astype(np.uint8).tobytes())
    return folder


def csv_wrong_column_count(folder):
    return write_csv(folder, HEADER, csv_row(), csv_row(), csv_row(count=783), csv_row())


def csv_not_an_integer(folder):
    row = csv_row().split(",")
    row[101] = "abc"
    return write_csv(folder, HEADER, csv_row(), ",".join(row))


def csv_pixel_out_of_range(folder):
    row = csv_row().split(",")
    row[8] = "256"
    return write_csv(folder, HEADER, csv_row(), csv_row(), csv_row(), ",".join(row))


def csv_negative_pixel(folder):
    row = csv_row().split(",")
    row[1] = "-1"
    return write_csv(folder, HEADER, ",".join(row))


def csv_missing_value(folder):
    row = csv_row().split(",")
    row[784] = ""
    return write_csv(folder, HEADER, csv_row(), ",".join(row))


def csv_label_out_of_range(folder):
    return write_csv(folder, HEADER, csv_row(), csv_row(label=10))


def csv_bad_header(folder):
    return write_csv(folder, HEADER.replace("pixel5,", "pixel 5,"), csv_row())


def csv_header_only(folder):
    return write_csv(folder, HEADER)


def empty_csv(folder):
    path = folder / "test.csv"
    path.write_bytes(b"")
    return path


def missing_file(folder):
    return folder / "nowhere" / "train.csv"


def image_not_an_image(folder):
    path = folder / "digit.png"
    path.write_bytes(b"this is not a PNG")
    return path


def image_without_a_digit(folder):
    from PIL import Image

    path = folder / "photo.jpg"
    Image.new("RGB", (64, 48), "white").save(path)
    return path


def npz_with_objects(folder):
    path = folder / "mnist.npz"
    np.savez(path, x_train=np.array([object()] * 3, dtype=object))
    return path


def npz_damaged(folder):
    path = folder / "mnist.npz"
    path.write_bytes(b"PK\x03\x04 broken archive")
    return path


def label_folder_not_a_digit(folder):
    from PIL import Image

    for name in ("3", "cat"):
        (folder / "digits" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "digits" / name / "0.png")
    return folder / "digits"


CASES = [
    (wrong_magic, r"train-images-idx3-ubyte: not an IDX file: magic number 0x12340803"),
    (wrong_dimensions, r"images are 32x32 pixels; digitlab reads 28x28 digits"),
    (truncated_idx, r"truncated: the header promises 10 x 28 x 28 values \(7840 bytes\) but only 2352 bytes follow"),
    (truncated_gzip, r"train-images-idx3-ubyte.gz: truncated gzip file"),
    (counts_differ, r"train-labels-idx1-ubyte.gz: 9 labels but train-images-idx3-ubyte.gz has 10 images"),
    (idx_label_out_of_range, r"train-labels-idx1-ubyte, item 6: label 11 is outside 0..9"),
    (csv_wrong_column_count, r"train.csv, line 4: 784 values, expected 785"),
    (csv_not_an_integer, r"train.csv, line 3: pixel100 is 'abc', not a whole number"),
    (csv_pixel_out_of_range, r"train.csv, line 5: pixel7 is 256, outside 0..255"),
    (csv_negative_pixel, r"train.csv, line 2: pixel0 is -1, outside 0..255"),
    (csv_missing_value, r"train.csv, line 3: pixel783 is empty"),
    (csv_label_out_of_range, r"train.csv, line 3: label 10 is outside 0..9"),
    (csv_bad_header, r"train.csv, line 1: header is not Kaggle's .*column 7 is 'pixel 5', expected 'pixel5'"),
    (csv_header_only, r"train.csv: has a header but no rows"),
    (empty_csv, r"test.csv: the file is empty"),
    (missing_file, r"nowhere/train.csv: no such file or folder"),
    (image_not_an_image, r"digit.png: not an image, or a damaged one"),
    (image_without_a_digit, r"photo.jpg: no digit found"),
    (npz_with_objects, r"mnist.npz: array x_train holds Python objects, which digitlab never loads"),
    (npz_damaged, r"mnist.npz: not a readable .npz file"),
    (label_folder_not_a_digit, r"digits: subfolders must be named 0..9 by label; found cat"),
]


@pytest.mark.parametrize("make_bad, message", CASES, ids=[case[0].__name__ for case in CASES])
def test_library_names_file_and_place(tmp_path, make_bad, message):
    path = make_bad(tmp_path)
    with pytest.raises(DataError, match=message):
        digitlab.load_parts(path)


@pytest.mark.parametrize("make_bad, message", CASES, ids=[case[0].__name__ for case in CASES])
def test_cli_prints_one_line_and_exits_non_zero(tmp_path, run_cli, make_bad, message):
    path = make_bad(tmp_path)
    result = run_cli("data", "info", path)
    assert result.code == 1
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_bad_line_found_in_large_csv_after_fast_path_fails(tmp_path):
    digits = make_digits(3000)
    path = kaggle_csv.write(tmp_path / "train.csv", digits)
    lines = path.read_text().splitlines()
    lines[2500] = lines[2500].replace(",", ",x", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 2501: pixel0 is 'x\d+', not a whole number"):
        kaggle_csv.read(path)
