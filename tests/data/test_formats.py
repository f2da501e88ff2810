"""Every format round-trips through `digitlab data convert`, and sources are recognised by content."""

from pathlib import Path

import numpy as np
import pytest

import digitlab
from conftest import make_digits
from digitlab.data.convert import convert
from digitlab.data.formats import idx, image_folder, kaggle_csv, npz


def assert_same(left, right):
    assert np.array_equal(left.images, right.images)
    if left.labels is None:
        assert right.labels is None
    else:
        assert np.array_equal(left.labels, right.labels)


@pytest.fixture
def two_parts():
    return {"train": make_digits(40, seed=1), "test": make_digits(20, seed=2)}


@pytest.mark.parametrize(
    "to, name",
    [("idx", "as-idx"), ("csv", "as-csv"), ("npz", "digits.npz"), ("png", "as-png")],
)
def test_two_part_source_round_trips_through_every_format(tmp_path, two_parts, to, name):
    written = convert(two_parts, tmp_path / name, to=to)
    loaded = digitlab.load_parts(written)
    assert list(loaded) == ["train", "test"]
    for part in two_parts:
        assert_same(two_parts[part], loaded[part])


@pytest.mark.parametrize("name", ["train.csv", "train.csv.gz", "digits.npz"])
def test_single_part_files_round_trip(tmp_path, digits, name):
    written = convert({"train": digits}, tmp_path / name)
    assert_same(digits, digitlab.load(written))


def test_idx_chain_idx_to_csv_to_png_to_npz_to_idx_is_lossless(tmp_path, run_cli, two_parts):
    convert(two_parts, tmp_path / "start", to="idx")
    steps = [("start", "csv-step", "csv"), ("csv-step", "png-step", "png"),
             ("png-step", "step.npz", "npz"), ("step.npz", "end", "idx")]
    for source, destination, to in steps:
        result = run_cli("data", "convert", tmp_path / source, tmp_path / destination, "--to", to)
        assert result.code == 0, result.err
    start, end = sorted((tmp_path / "start").iterdir()), sorted((tmp_path / "end").iterdir())
    assert [path.name for path in start] == [path.name for path in end]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(start, end))


def test_idx_files_use_standard_names_and_raw_files_load_too(tmp_path, two_parts):
    folder = convert(two_parts, tmp_path / "idx", to="idx")
    assert sorted(path.name for path in folder.iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    ]
    raw = tmp_path / "raw"
    raw.mkdir()
    idx.write_images(raw / "train-images-idx3-ubyte", two_parts["train"].images)
    idx.write_labels(raw / "train-labels-idx1-ubyte", two_parts["train"].labels)
    assert_same(two_parts["train"], digitlab.load(raw))
    # A lone images file finds its labels beside it.
    assert_same(two_parts["train"], digitlab.load(raw / "train-images-idx3-ubyte"))


def test_idx_recognised_by_magic_not_name(tmp_path, digits):
    oddly_named = tmp_path / "data.bin"
    idx.write_images(oddly_named, digits.images)
    loaded = digitlab.load(oddly_named)
    assert np.array_equal(loaded.images, digits.images) and loaded.labels is None


def test_kaggle_csv_layout_and_kaggle_test_without_labels(tmp_path, two_parts):
    folder = convert(two_parts, tmp_path / "kaggle", to="csv", kaggle=True)
    train_header = (folder / "train.csv").read_text().splitlines()[0].split(",")
    test_header = (folder / "test.csv").read_text().splitlines()[0].split(",")
    assert train_header[:2] == ["label", "pixel0"] and train_header[-1] == "pixel783"
    assert len(train_header) == 785 and test_header[0] == "pixel0" and len(test_header) == 784
    loaded = digitlab.load_parts(folder)
    assert loaded["test"].labels is None
    assert_same(two_parts["train"], loaded["train"])


def test_png_folder_layout_labelled_and_flat(tmp_path, digits):
    folder = convert({"train": digits}, tmp_path / "png", to="png")
    assert sorted(path.name for path in folder.iterdir()) == [str(d) for d in range(10)]
    assert (folder / "3" / "00003.png").is_file()
    unlabelled = make_digits(12, labelled=False)
    flat = convert({"test": unlabelled}, tmp_path / "flat", to="png")
    assert len(list(flat.glob("*.png"))) == 12
    assert_same(unlabelled, digitlab.load(flat))


def test_single_image_file_and_grey_rgb_image_load(tmp_path, digits):
    from PIL import Image

    Image.fromarray(digits.images[0]).save(tmp_path / "one.png")
    Image.fromarray(np.stack([digits.images[1]] * 3, axis=-1)).save(tmp_path / "rgb.bmp")
    assert np.array_equal(digitlab.load(tmp_path / "one.png").images[0], digits.images[0])
    assert np.array_equal(image_folder.read_image(tmp_path / "rgb.bmp"), digits.images[1])


def test_keras_style_npz_with_float_and_channel_axis(tmp_path, digits):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=digits.images[..., None].astype(np.float32), y_train=digits.labels,
             x_test=digits.images[:5], y_test=digits.labels[:5])
    parts = npz.read(path)
    assert_same(digits, parts["train"])
    assert len(parts["test"]) == 5


def test_part_selection_with_colon(tmp_path, two_parts):
    folder = convert(two_parts, tmp_path / "idx", to="idx")
    assert len(digitlab.load(f"{folder}:test")) == 20
    assert len(digitlab.load(folder, part="train")) == 40
    with pytest.raises(digitlab.DigitlabError, match="has no part 'validation'; its parts are train, test"):
        digitlab.load(f"{folder}:validation")


def test_convert_never_overwrites_without_force(tmp_path, run_cli, digits):
    target = tmp_path / "train.csv"
    target.write_text("precious")
    convert({"train": digits}, tmp_path / "a.npz")
    result = run_cli("data", "convert", tmp_path / "a.npz", target)
    assert result.code == 1
    assert "already exists; pass --force" in result.err
    assert target.read_text() == "precious"
    assert run_cli("data", "convert", tmp_path / "a.npz", target, "--force").code == 0
    assert_same(digits, kaggle_csv.read(target))


def test_convert_needs_a_format_it_can_tell(tmp_path, run_cli, digits):
    convert({"train": digits}, tmp_path / "a.npz")
    result = run_cli("data", "convert", tmp_path / "a.npz", tmp_path / "out")
    assert result.code == 1 and "--to" in result.err
    assert not (tmp_path / "out").exists()


def test_kaggle_csv_loads_large_file_quickly_enough_to_be_usable(tmp_path):
    # Correctness at the size of Kaggle's train.csv; the speed is measured in bench/.
    dataset = make_digits(2000, seed=5)
    path = kaggle_csv.write(tmp_path / "train.csv", dataset)
    assert_same(dataset, kaggle_csv.read(Path(path)))


def test_idx_readers_check_the_header_before_reading_the_values(tmp_path):
    import gzip
    import struct
    import tracemalloc

    from digitlab.data.formats import idx
    from digitlab.errors import DataError

    inflating = tmp_path / "train-images-idx3-ubyte.gz"  # a wrong magic number, then 64 MB of zeros
    with gzip.open(inflating, "wb", compresslevel=1) as stream:
        stream.write(struct.pack(">I", 0x00001203))
        for _ in range(64):
            stream.write(bytes(1 << 20))
    promising = tmp_path / "t10k-images-idx3-ubyte"  # a header promising a million images, then three
    promising.write_bytes(struct.pack(">IIII", 0x00000803, 1_000_000, 28, 28) + bytes(3 * 28 * 28))
    for path, message in ((inflating, "not an IDX file: magic number 0x00001203"),
                          (promising, "truncated: the header promises 1000000 x 28 x 28 values")):
        tracemalloc.start()
        with pytest.raises(DataError, match=message):
            idx.read_images(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 8 << 20, f"{path.name}: {peak:,} bytes at the peak"


def test_an_npz_array_claiming_more_than_it_holds_is_refused_before_loading(tmp_path):
    import io
    import zipfile

    from digitlab.data.formats import npz
    from digitlab.errors import DataError

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (100_000_000, 28, 28)})
    path = tmp_path / "mnist.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", header.getvalue() + bytes(3 * 28 * 28))
    with pytest.raises(DataError, match=r"mnist.npz: x_train claims shape \(100000000, 28, 28\) "
                                        r"\(78,400,000,000 bytes\) but holds [\d,]+ bytes$"):
        npz.read(path)
