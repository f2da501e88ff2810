"""The real MNIST files, read as users read them."""

import gzip

import numpy as np
import pytest

import digitlab

pytestmark = pytest.mark.mnist

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_named_mnist_has_canonical_sizes_and_counts(mnist_folder, monkeypatch):
    monkeypatch.setenv("DIGITLAB_DATA", str(mnist_folder))
    parts = digitlab.load_parts("mnist", offline=True)
    assert list(parts) == ["train", "test"]
    assert parts["train"].images.shape == (60000, 28, 28)
    assert parts["train"].class_counts().tolist() == TRAIN_COUNTS
    assert parts["test"].class_counts().tolist() == TEST_COUNTS
    assert parts["train"].labels[:5].tolist() == [5, 0, 4, 1, 9]


def test_data_info_mnist_prints_sizes_and_class_counts(mnist_folder, monkeypatch, run_cli):
    monkeypatch.setenv("DIGITLAB_DATA", str(mnist_folder))
    result = run_cli("--offline", "data", "info", "mnist")
    assert result.code == 0, result.err
    assert "60,000" in result.out and "10,000" in result.out
    train_row = next(line for line in result.out.splitlines()
                     if line.strip("│ ").startswith("train") and "5923" in line)
    assert [int(token) for token in train_row.replace("│", " ").split()[1:]] == TRAIN_COUNTS


def test_mnist_folder_by_path_and_stratified_validation(mnist_folder):
    train = digitlab.load(mnist_folder)
    fit, validation = train.split(5000, seed=0)
    assert len(validation) == 5000 and len(fit) == 55000
    shares = validation.class_counts() / 5000
    assert np.allclose(shares, np.array(TRAIN_COUNTS) / 60000, atol=1e-3)


def test_mnist_comes_back_from_the_cache_memory_mapped_and_byte_for_byte_the_files_values(mnist_folder, monkeypatch):
    monkeypatch.setenv("DIGITLAB_DATA", str(mnist_folder))
    digitlab.load_parts("mnist", offline=True)
    warm = digitlab.load_parts("mnist", offline=True)
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images = gzip.decompress((mnist_folder / f"{prefix}-images-idx3-ubyte.gz").read_bytes())[16:]
        labels = gzip.decompress((mnist_folder / f"{prefix}-labels-idx1-ubyte.gz").read_bytes())[8:]
        assert isinstance(warm[part].images.base, np.memmap)
        assert warm[part].images.tobytes() == images
        assert warm[part].labels.tolist() == list(labels)
