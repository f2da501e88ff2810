"""More bad input, each with its exact message, from the library and as one CLI line.

test_bad_input.py covers the classic damage to IDX and CSV files; this catalogue adds damaged
files of every other format, folders and files swapped, images that are not images, decompression
bombs, models that are not models (or not safe to load) and training options out of range. It
also checks inputs that look odd but are fine: animated GIFs, 16-bit and CMYK images.
"""

from __future__ import annotations

import gzip
import re
import struct
import zipfile
import zlib

import numpy as np
import pytest

import digitlab
from conftest import make_digits
from digitlab.data.formats import idx, image_folder, kaggle_csv, npz
from digitlab.errors import DataError, DigitlabError
from digitlab.preparation import prepare

HEADER = "label," + ",".join(f"pixel{i}" for i in range(784))


def csv_row(label=3, pixel=0, count=784):
    return ",".join([str(label)] + [str(pixel)] * count)


def assert_one_line_error(result, message):
    """The CLI failed, printing one `error: ...` line that holds `message`, and no traceback."""
    assert result.code != 0
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert re.search(message, lines[0]), lines[0]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height grey pixels: nothing that size is allocated."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + png_chunk(b"IEND", b"")
    )


def digit_image(size=(60, 60), mode="L"):
    """A dark bar (a 1) on white paper."""
    from PIL import Image, ImageDraw

    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).line([(size[0] // 2, size[1] // 6), (size[0] // 2, 5 * size[1] // 6)], fill=0, width=5)
    return image.convert(mode) if mode != "L" else image


# Damaged files of every format, folders and files swapped, images that are not images


def truncated_npz(folder):
    path = npz.write(folder / "mnist.npz", {"train": make_digits(10)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def npz_single_array(folder):
    path = folder / "mnist.npz"
    with open(path, "wb") as handle:
        np.save(handle, make_digits(2).images)
    return path


def npz_not_a_zip(folder):
    path = folder / "mnist.npz"
    path.write_bytes(b"x_train,y_train\n1,2\n")
    return path


def npz_with_nan(folder):
    path = folder / "mnist.npz"
    images = make_digits(3).images.astype(np.float32)
    images[1, 5, 5] = np.nan
    np.savez(path, x_train=images)
    return path


def npz_wrong_image_shape(folder):
    path = folder / "mnist.npz"
    np.savez(path, x_train=np.zeros((3, 32, 32), np.uint8))
    return path


def npz_label_count(folder):
    path = folder / "mnist.npz"
    np.savez(path, x_train=make_digits(3).images, y_train=np.array([1, 2]))
    return path


def png_truncated(folder):
    path = folder / "digit.png"
    digit_image().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def png_corrupt_data(folder):
    path = folder / "digit.png"
    noise = np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)
    from PIL import Image

    Image.fromarray(noise).save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 4
    data[start + 2 : start + 40] = bytes(38)  # the compressed pixels zeroed
    path.write_bytes(bytes(data))
    return path


def jpeg_truncated(folder):
    path = folder / "photo.jpg"
    digit_image(mode="RGB").save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def jpeg_header_only(folder):
    path = folder / "photo.jpg"
    digit_image(mode="RGB").save(path)
    path.write_bytes(path.read_bytes()[:20])
    return path


def text_named_jpg(folder):
    path = folder / "scan.jpg"
    path.write_text("<html><body>404 Not Found</body></html>")
    return path


def png_bomb(folder):
    path = folder / "bomb.png"
    path.write_bytes(png_claiming(100_000, 100_000))
    return path


def png_huge(folder):
    path = folder / "huge.png"
    path.write_bytes(png_claiming(9000, 9000))
    return path


def csv_truncated_mid_row(folder):
    path = folder / "train.csv"
    path.write_text("\n".join([HEADER, csv_row(), csv_row()[:800]]))
    return path


def csv_gz_truncated(folder):
    path = kaggle_csv.write(folder / "train.csv.gz", make_digits(20))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def csv_nan(folder):
    row = csv_row().split(",")
    row[10] = "NaN"
    path = folder / "train.csv"
    path.write_text("\n".join([HEADER, csv_row(), ",".join(row)]) + "\n")
    return path


def csv_binary_rows(folder):
    path = folder / "train.csv"
    path.write_bytes((HEADER + "\n" + csv_row() + "\n").encode() + b"3,\xff\xfe\x00\x01\n")
    return path


def idx_gzip_damaged(folder):
    path = folder / "train-images-idx3-ubyte.gz"
    data = bytearray(gzip.compress(idx._encode(make_digits(3).images), mtime=0))
    data[-8:-4] = bytes(4)  # the CRC no longer matches
    path.write_bytes(bytes(data))
    return path


def idx_extra_bytes(folder):
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(idx._encode(make_digits(2).images) + bytes(16))
    return path


def idx_labels_alone(folder):
    path = folder / "train-labels-idx1-ubyte"
    idx.write_labels(path, make_digits(5).labels)
    return path


def idx_images_with_a_bad_magic_number(folder):
    digits = make_digits(5)
    idx.write_labels(folder / "train-labels-idx1-ubyte", digits.labels)
    idx.write_images(folder / "train-images-idx3-ubyte", digits.images)
    data = bytearray((folder / "train-images-idx3-ubyte").read_bytes())
    data[2] = 0x12  # no IDX type code
    (folder / "train-images-idx3-ubyte").write_bytes(bytes(data))
    return folder


def unknown_format(folder):
    path = folder / "digits.bin"
    path.write_bytes(bytes(range(256)))
    return path


def empty_folder(folder):
    (folder / "digits").mkdir()
    return folder / "digits"


def folder_named_like_a_file(folder):
    (folder / "train.csv").mkdir()
    return folder / "train.csv"


def file_where_a_folder_is_expected(folder):
    (folder / "train.csv").write_text(HEADER + "\n" + csv_row() + "\n")
    return folder / "train.csv" / "digits"


def damaged_image_in_label_folder(folder):
    (folder / "digits" / "3").mkdir(parents=True)
    digit_image((28, 28)).save(folder / "digits" / "3" / "0.png")
    (folder / "digits" / "3" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder / "digits"


def csv_semicolons(folder):
    columns = ["label"] + [f"pixel{index}" for index in range(784)]
    rows = [";".join(columns), ";".join(["3"] + ["0"] * 784)]
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    return folder / "train.csv"


def missing_part(folder):
    npz.write(folder / "mnist.npz", {"train": make_digits(3)})
    return f"{folder / 'mnist.npz'}:validation"


DATA_CASES = [
    (truncated_npz, r"mnist.npz: not a readable .npz file: a damaged or truncated zip archive "
                    r"\(File is not a zip file\)$"),
    (npz_single_array, r"mnist.npz: a single .npy array, not an .npz archive of x_<part> / y_<part> arrays$"),
    (npz_not_a_zip, r"mnist.npz: not a readable .npz file \(not a zip archive\)$"),
    (npz_with_nan, r"mnist.npz: x_train holds NaN values$"),
    (npz_wrong_image_shape, r"mnist.npz: x_train has shape \(3, 32, 32\); digitlab reads \(N, 28, 28\) images$"),
    (npz_label_count, r"mnist.npz: y_train has shape \(2,\), expected \(3,\) to match the images$"),
    (png_truncated, r"digit.png: not an image, or a damaged one \(image file is truncated\)$"),
    (png_corrupt_data, r"digit.png: not an image, or a damaged one \(.+\)$"),
    (jpeg_truncated, r"photo.jpg: not an image, or a damaged one \((Truncated File Read|image file is truncated.*)\)$"),
    (jpeg_header_only, r"photo.jpg: not an image, or a damaged one"),
    (text_named_jpg, r"scan.jpg: not an image, or a damaged one$"),
    (png_bomb, r"bomb.png: refused: the image claims 10,000,000,000 pixels, more than the 40-megapixel limit "
               r"\(a decompression bomb, or no digit photo\)$"),
    (png_huge, r"huge.png: refused: the image is 9000x9000 pixels, more than the 40-megapixel limit"),
    (csv_truncated_mid_row, r"train.csv, line 3: 401 values, expected 785 "
                            r"\(the file ends in the middle of this row: truncated\?\)$"),
    (csv_gz_truncated, r"train.csv.gz: truncated gzip file: it ends before its compressed data does$"),
    (csv_nan, r"train.csv, line 3: pixel9 is 'NaN', not a whole number$"),
    (csv_binary_rows, r"train.csv, line 3: not a text file \(CSV expected\): bytes that are not UTF-8$"),
    (idx_gzip_damaged, r"train-images-idx3-ubyte.gz: damaged gzip file \(CRC check failed"),
    (idx_extra_bytes, r"train-images-idx3-ubyte: 16 bytes more than the header's 2 x 28 x 28 values$"),
    (idx_labels_alone, r"train-labels-idx1-ubyte: is an IDX labels file; give the images file "
                       r"\(or the folder holding both\)$"),
    (idx_images_with_a_bad_magic_number, r"train-images-idx3-ubyte: not an IDX file: magic number 0x00001203, "
                                          r"expected 0x00000803 \(images\) or 0x00000801 \(labels\)$"),
    (unknown_format, r"digits.bin: unknown format: expected IDX \(.gz\), .npz, Kaggle .csv or an image file$"),
    (empty_folder, r"digits: no digit data found: expected IDX files, train.csv/test.csv, label folders 0..9 "
                   r"or images$"),
    (folder_named_like_a_file, r"train.csv: no digit data found"),
    (file_where_a_folder_is_expected, r"train.csv/digits: no such file or folder: "
                                      r"\S*train.csv is a file, not a folder$"),
    (damaged_image_in_label_folder, r"digits/3/1.png: not an image, or a damaged one$"),
    (missing_part, r"mnist.npz: has no part 'validation'; its parts are train$"),
    (csv_semicolons, r"train.csv, line 1: header is not Kaggle's .*: "
                     r"column 1 is 'label;pixel0;pixel1;pixel2;pixel3;pixel4'\.\.\. \(6,951 characters\), "
                     r"expected 'pixel0' "
                     r"\(its columns are separated by ';'; Kaggle's CSV uses commas\)$"),
]


@pytest.mark.parametrize("make_bad, message", DATA_CASES, ids=[case[0].__name__ for case in DATA_CASES])
def test_library_names_file_and_place(tmp_path, make_bad, message):
    source = make_bad(tmp_path)
    with pytest.raises(DataError, match=message):
        digitlab.load_parts(source)


@pytest.mark.parametrize("make_bad, message", DATA_CASES, ids=[case[0].__name__ for case in DATA_CASES])
def test_cli_prints_one_line_and_exits_non_zero(tmp_path, run_cli, make_bad, message):
    source = make_bad(tmp_path)
    assert_one_line_error(run_cli("data", "info", source), message)


# Each reader given a folder where it expects a file


def _folder(tmp_path, name):
    (tmp_path / name).mkdir()
    return tmp_path / name


READERS_GIVEN_A_FOLDER = [
    (kaggle_csv.read, "train.csv", r"train.csv: is a folder, expected a CSV file$"),
    (npz.read, "mnist.npz", r"mnist.npz: is a folder, expected an .npz file$"),
    (idx.read_images, "train-images-idx3-ubyte", r"train-images-idx3-ubyte: is a folder, expected a file$"),
    (image_folder.read_image, "digit.png", r"digit.png: is a folder, not an image$"),
    (prepare, "photo.jpg", r"photo.jpg: is a folder, not an image$"),
]


@pytest.mark.parametrize("read, name, message", READERS_GIVEN_A_FOLDER,
                         ids=[case[1] for case in READERS_GIVEN_A_FOLDER])
def test_readers_given_a_folder(tmp_path, read, name, message):
    with pytest.raises(DataError, match=message):
        read(_folder(tmp_path, name))


def test_image_folder_reader_given_a_file(tmp_path):
    path = tmp_path / "digit.png"
    digit_image().save(path)
    with pytest.raises(DataError, match=r"digit.png: cannot list the folder: Not a directory$"):
        image_folder.read_folder(path)


# Odd but fine: animated GIFs, 16-bit and CMYK images


def test_animated_gif_uses_its_first_frame(tmp_path):
    from PIL import Image

    first = digit_image()
    blank = Image.new("L", first.size, 255)
    first.save(tmp_path / "one.gif", save_all=True, append_images=[blank, blank], duration=100, loop=0)
    blank.save(tmp_path / "blank.gif", save_all=True, append_images=[first], duration=100, loop=0)
    first.save(tmp_path / "still.gif")
    assert Image.open(tmp_path / "one.gif").n_frames >= 2

    animated = digitlab.load(tmp_path / "one.gif")
    still = digitlab.load(tmp_path / "still.gif")
    assert animated.images.shape == (1, 28, 28)
    np.testing.assert_array_equal(animated.images, still.images)
    # the digit is only on the second frame: the first frame is what counts
    with pytest.raises(DataError, match=r"blank.gif: no digit found$"):
        digitlab.load(tmp_path / "blank.gif")


@pytest.mark.parametrize("size", [(60, 60), (28, 28)])
def test_sixteen_bit_grey_images_load(tmp_path, size):
    from PIL import Image

    eight_bit = np.asarray(digit_image(size))
    sixteen_bit = eight_bit.astype(np.uint16) * 257
    Image.fromarray(sixteen_bit).save(tmp_path / "deep.png")
    digit_image(size).save(tmp_path / "plain.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")

    deep = digitlab.load(tmp_path / "deep.png").images
    plain = digitlab.load(tmp_path / "plain.png").images
    assert deep.shape == (1, 28, 28) and deep.max() > 200
    assert np.abs(deep.astype(int) - plain.astype(int)).max() <= 2


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
@pytest.mark.parametrize("size", [(60, 60), (28, 28)])
def test_cmyk_images_load(tmp_path, suffix, size):
    from PIL import Image

    digit_image(size, "CMYK").save(tmp_path / f"cmyk{suffix}")
    assert Image.open(tmp_path / f"cmyk{suffix}").mode == "CMYK"
    images = digitlab.load(tmp_path / f"cmyk{suffix}").images
    assert images.shape == (1, 28, 28) and images.max() > 200  # white ink on black, as MNIST
    assert images[0, 0, 0] == 0


# Models that are not models, do not fit, or would run code


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras

    folder = tmp_path_factory.mktemp("models")
    (folder / "text.keras").write_text("not a model at all")
    (folder / "notes.txt").write_text("not a model at all")
    (folder / "weights.h5").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "run").mkdir()
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]).save(
        folder / "cifar.keras"
    )
    keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(7)]).save(
        folder / "seven.keras"
    )
    keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Flatten(), keras.layers.Dense(10)]
    ).save(folder / "lambda.keras")
    data = (folder / "seven.keras").read_bytes()
    (folder / "truncated.keras").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(folder / "huge-config.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", '{"class_name": "' + " " * (20 << 20) + '"}')  # 20 MB, 20 KB zipped
    digit_image().save(folder / "digit.png")
    return folder


MODEL_CASES = [
    ("text.keras", r"text.keras: not a Keras model: .keras files are zip archives and this is not a zip archive$"),
    ("notes.txt", r"notes.txt: not a model file: expected a .keras file, a legacy .h5 file, an .onnx file "
                  r"or a training run folder$"),
    ("weights.h5", r"weights.h5: not a Keras .h5 model: the file is not in HDF5 format$"),
    ("truncated.keras", r"truncated.keras: not a Keras model: .keras files are zip archives"),
    ("run", r"run: no model.keras or model.onnx in this folder"),
    ("huge-config.keras", r"huge-config.keras: its config.json is 20,971,538 bytes; a digit model's is a few "
                          r"kilobytes, and more than 16,777,216 is refused unread$"),
    ("cifar.keras", r"cifar.keras: the model takes input of shape \(N, 32, 32, 3\), which 28x28 digit images "
                    r"cannot be fed into"),
    ("seven.keras", r"seven.keras: the model outputs shape \(N, 7\), expected \(N, 10\): one score per digit 0..9$"),
    ("lambda.keras", r"lambda.keras: refused: the model holds Python code \(a Lambda layer or a custom function\) "
                     r"that would run when it is loaded, and digitlab loads models in safe mode only"),
]


@pytest.mark.parametrize("name, message", MODEL_CASES, ids=[case[0] for case in MODEL_CASES])
def test_bad_model_names_the_file(models, name, message):
    from digitlab.inference.model_files import ModelError, load_model

    with pytest.raises(ModelError, match=message):
        load_model(models / name)


@pytest.mark.parametrize("name, message", MODEL_CASES, ids=[case[0] for case in MODEL_CASES])
def test_cli_bad_model_prints_one_line(models, run_cli, name, message):
    assert_one_line_error(run_cli("predict", models / name, models / "digit.png"), message)


# Training options: unknown keys, out-of-range values


def _write(path, text):
    path.write_text(text)
    return path


CONFIG_CASES = [
    ({"overrides": {"epoch": 3}}, r"^option: unknown key 'epoch'; known keys: recipe, data, "),
    ({"recipe": "kerass-example"}, r"^unknown recipe 'kerass-example'; recipes: .*keras-example.*; "
                                    r"did you mean 'keras-example'\?$"),
    ({"config_file": "bogus.toml"}, r"bogus.toml: unknown key 'bogus'; known keys: "),
    ({"config_file": "augment.toml"}, r"augment.toml: unknown augmentation key 'rotaton'; known: binarise, blur, "
                                      r"elastic, elastic_smoothness, faint, height_shift, low_resolution, probability, "
                                      r"rotation, slant, stretch, stroke_width, width_shift, zoom$"),
    ({"config_file": "broken.toml"}, r"broken.toml: not valid TOML \("),
    ({"overrides": {"epochs": 0}}, r"^epochs must be a positive number, got 0$"),
    ({"overrides": {"learning_rate": -1.0}}, r"^learning_rate must be a positive number, got -1.0$"),
    ({"overrides": {"batch_size": 0}}, r"^batch_size must be a positive number, got 0$"),
    ({"overrides": {"epochs": "ten"}}, r"^option: epochs must be int, got 'ten'$"),
    ({"overrides": {"label_smoothing": 1.0}}, r"^label_smoothing must be in \[0, 1\), got 1.0$"),
    ({"overrides": {"augmentation": {"rotation": 200.0}}}, r"^augmentation.rotation must be in \[0, 180\), got 200.0$"),
    ({"overrides": {"optimizer": "adamm"}}, r"^optimizer = 'adamm' is not one of adam, adamw, rmsprop, sgd; "
                                            r"did you mean 'adam'\?$"),
    ({"overrides": {"early_stopping_patience": "5"}}, r"^option: early_stopping_patience must be int, got '5'$"),
    ({"overrides": {"early_stopping_patience": -2}}, r"^early_stopping_patience must be a positive number, got -2$"),
    ({"overrides": {"threads": 1.5}}, r"^option: threads must be int, got 1.5$"),
    ({"overrides": {"test": 5}}, r"^option: test must be str, got 5$"),
    ({"overrides": {"augmentation": {"rotation": "ten"}}},
     r"^option: augmentation.rotation must be a number, got 'ten'$"),
    ({"overrides": {"augmentation": {"zoom": True}}}, r"^option: augmentation.zoom must be a number, got True$"),
    ({"config_file": "zero.toml"}, r"zero.toml: epochs must be a positive number, got 0$"),
    ({"config_file": "folder.toml"}, r"folder.toml: cannot be read \(Is a directory\)$"),
    ({"config_file": "utf16.toml"}, r"utf16.toml: not a UTF-8 text file \(byte 0\)$"),
]


@pytest.fixture
def config_files(tmp_path):
    _write(tmp_path / "bogus.toml", "epochs = 2\nbogus = 1\n")
    _write(tmp_path / "augment.toml", "[augmentation]\nrotaton = 10\n")
    _write(tmp_path / "broken.toml", "epochs = = 2\n")
    _write(tmp_path / "zero.toml", "epochs = 0\n")
    (tmp_path / "folder.toml").mkdir()
    (tmp_path / "utf16.toml").write_text("epochs = 2\n", encoding="utf-16")
    return tmp_path


@pytest.mark.parametrize("arguments, message", CONFIG_CASES,
                         ids=[re.sub(r"\W+", "-", str(case[0])) for case in CONFIG_CASES])
def test_bad_training_options(config_files, arguments, message):
    from digitlab.recipes.config import ConfigError, resolve

    if "config_file" in arguments:
        arguments = {"config_file": config_files / arguments["config_file"]}
    with pytest.raises(ConfigError, match=message):
        resolve(**arguments)


@pytest.fixture
def small_csv(tmp_path):
    return kaggle_csv.write(tmp_path / "train.csv", make_digits(40))


TRAIN_FLAG_CASES = [
    (["--learning-rate", "-1"], r"error: learning_rate must be a positive number, got -1.0$"),
    (["--validation", "1.5"], r"error: validation fraction must be in \[0, 1\), got 1.5$"),
    (["--validation", "-0.2"], r"error: validation fraction must be in \[0, 1\), got -0.2$"),
    (["--epochs", "0"], r"error: epochs must be a positive number, got 0$"),
    (["--batch-size", "0"], r"error: batch_size must be a positive number, got 0$"),
    (["--recipe", "kerass-example"], r"error: unknown recipe 'kerass-example'"),
    (["--label-smoothing", "1.5"], r"error: label_smoothing must be in \[0, 1\), got 1.5$"),
    (["--rotation", "-5"], r"error: augmentation.rotation must be in \[0, 180\), got -5.0$"),
    (["--optimizer", "adamm"], r"error: optimizer = 'adamm' is not one of adam, adamw, rmsprop, sgd; "
                               r"did you mean 'adam'\?$"),
    (["--schedule", "onecycle"], r"error: schedule = 'onecycle' is not one of constant, exponential, plateau, "
                                 r"cosine, one-cycle; did you mean 'one-cycle'\?$"),
    (["--early-stopping", "-2"], r"error: early_stopping_patience must be a positive number, got -2$"),
    (["--validation", "unlabelled.csv"], r"error: validation data .*unlabelled.csv has no labels$"),
]


@pytest.mark.parametrize("flags, message", TRAIN_FLAG_CASES, ids=[" ".join(case[0]) for case in TRAIN_FLAG_CASES])
def test_cli_train_with_bad_flags_prints_one_line(run_cli, tmp_path, small_csv, flags, message):
    kaggle_csv.write(tmp_path / "unlabelled.csv", make_digits(20, labelled=False))
    flags = [str(tmp_path / flag) if flag == "unlabelled.csv" else flag for flag in flags]
    result = run_cli("train", "--data", small_csv, "--epochs", "1", "--runs-dir", tmp_path / "runs", *flags)
    assert_one_line_error(result, message)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_every_catalogued_error_is_a_digitlab_error():
    from digitlab.inference.model_files import ModelError
    from digitlab.recipes.config import ConfigError

    assert issubclass(DataError, DigitlabError)
    assert issubclass(ModelError, DigitlabError) and issubclass(ConfigError, DigitlabError)
