"""Decoded gzip IDX files come back memory-mapped from the cache, never stale, never in the way."""

import errno
import gzip
import os
import pickle

import numpy as np
import pytest

import digitlab
from conftest import make_digits
from digitlab.data import decoded, named
from digitlab.data.convert import convert
from digitlab.data.formats import idx
from digitlab.errors import DataError


def entries():
    folder = named.cache_root() / decoded.FOLDER
    return sorted(folder.glob("*.npy")) if folder.is_dir() else []


@pytest.fixture
def images_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    idx.write_images(path, make_digits(40, seed=1).images)
    return path


@pytest.fixture
def parts_folder(tmp_path):
    return convert({"train": make_digits(40, seed=1), "test": make_digits(20, seed=2)}, tmp_path / "idx", to="idx")


def test_a_second_read_is_memory_mapped_from_the_cache_without_inflating_the_values(images_file, monkeypatch):
    first = idx.read_images(images_file)
    assert not isinstance(first.base, np.memmap)
    reads = []
    read_bytes = idx.read_bytes
    monkeypatch.setattr(idx, "read_bytes", lambda path, limit=None: reads.append(limit) or read_bytes(path, limit))
    second = idx.read_images(images_file)
    assert isinstance(second.base, np.memmap) and not second.flags.writeable
    assert np.array_equal(first, second) and second.dtype == np.uint8
    assert reads == [idx.MAX_IDX_HEADER]  # the header, checked as always; not the values


def test_a_folder_loads_the_same_datasets_again_from_the_cache(parts_folder):
    cold = digitlab.load_parts(parts_folder)
    warm = digitlab.load_parts(parts_folder)
    assert len(entries()) == 4
    for part in ("train", "test"):
        assert np.array_equal(cold[part].images, warm[part].images)
        assert np.array_equal(cold[part].labels, warm[part].labels) and warm[part].labels.dtype == np.int64
        assert isinstance(warm[part].images.base, np.memmap)


def stored_gzip(images):
    """Gzip without compression: the file's size depends on the image count only."""
    return gzip.compress(idx._encode(images), compresslevel=0, mtime=0)


def test_a_source_rewritten_in_place_with_the_same_size_and_mtime_is_decoded_again(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(stored_gzip(make_digits(40, seed=1).images))
    idx.read_images(path)
    before = path.stat()
    other = make_digits(40, seed=9).images
    path.write_bytes(stored_gzip(other))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert np.array_equal(idx.read_images(path), other)
    assert len(entries()) == 1  # the earlier version's entry is gone
    assert np.array_equal(idx.read_images(path), other)


def _truncated(entry):
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])


def _not_npy(entry):
    entry.write_bytes(b"not an array" * 100)


def _empty(entry):
    entry.write_bytes(b"")


def _other_shape(entry):
    np.save(entry, np.zeros((39, 28, 28), np.uint8))


def _other_dtype(entry):
    np.save(entry, np.zeros((40, 28, 28), np.int16))


@pytest.mark.parametrize("damage", [_truncated, _not_npy, _empty, _other_shape, _other_dtype])
def test_a_damaged_cache_entry_is_decoded_again_and_repaired(images_file, damage):
    expected = idx.read_images(images_file)
    [entry] = entries()
    damage(entry)
    assert np.array_equal(idx.read_images(images_file), expected)
    assert entries() == [entry] and np.array_equal(np.load(entry), expected)
    assert isinstance(idx.read_images(images_file).base, np.memmap)


def test_cached_labels_outside_0_to_9_are_decoded_again(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    labels = make_digits(40).labels
    idx.write_labels(path, labels)
    idx.read_labels(path)
    [entry] = entries()
    np.save(entry, np.full(40, 12, np.uint8))
    assert idx.read_labels(path).tolist() == labels.tolist()
    assert np.load(entry).tolist() == labels.tolist()


def test_a_cache_folder_that_cannot_be_written_still_loads(parts_folder, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DIGITLAB_CACHE", str(blocker))
    expected = make_digits(40, seed=1)
    for _ in range(2):
        train = digitlab.load(parts_folder)
        assert np.array_equal(train.images, expected.images) and np.array_equal(train.labels, expected.labels)
    assert blocker.read_text() == "not a folder"


def test_a_write_that_fails_midway_leaves_no_entry_and_still_loads(images_file, monkeypatch):
    def half_then_full_disk(file, array, allow_pickle):
        with open(file, "wb") as handle:
            handle.write(b"\x93NUMPY" + bytes(100))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(decoded.np, "save", half_then_full_disk)
    expected = make_digits(40, seed=1).images
    assert np.array_equal(idx.read_images(images_file), expected)
    assert not any((named.cache_root() / decoded.FOLDER).iterdir())  # no entry, no temporary file
    assert np.array_equal(idx.read_images(images_file), expected)


def test_the_cache_never_hides_a_damaged_source(images_file):
    data = images_file.read_bytes()
    idx.read_images(images_file)
    images_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: truncated gzip file"):
        idx.read_images(images_file)
    images_file.write_bytes(gzip.compress(b"\x00\x00\x12\x03" + gzip.decompress(data)[4:], mtime=0))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: not an IDX file: magic number 0x00001203"):
        idx.read_images(images_file)


def test_a_source_with_a_bad_label_is_never_cached(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx._encode(np.array([3, 11, 4], np.uint8)), mtime=0))
    for _ in range(2):
        with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz, item 1: label 11 is outside 0..9"):
            idx.read_labels(path)
    assert entries() == []


def test_raw_idx_files_are_read_as_they_are_not_copied_into_the_cache(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    idx.write_images(path, make_digits(40).images)
    for _ in range(2):
        assert np.array_equal(idx.read_images(path), make_digits(40).images)
    assert entries() == []


def test_datasets_from_the_cache_split_subset_save_and_pickle_as_in_memory_ones_do(parts_folder, tmp_path):
    in_memory = make_digits(40, seed=1)
    digitlab.load(parts_folder)
    cached = digitlab.load(parts_folder)
    assert isinstance(cached.images.base, np.memmap)
    for mine, theirs in zip(cached.split(10, seed=3), in_memory.split(10, seed=3)):
        assert np.array_equal(mine.images, theirs.images) and np.array_equal(mine.labels, theirs.labels)
    assert np.array_equal(cached.subset(slice(5, 9)).images, in_memory.images[5:9])
    saved = digitlab.load(convert({"train": cached}, tmp_path / "saved.npz"))
    assert np.array_equal(saved.images, in_memory.images)
    unpickled = pickle.loads(pickle.dumps(cached))
    assert np.array_equal(unpickled.images, in_memory.images) and np.array_equal(unpickled.labels, in_memory.labels)
