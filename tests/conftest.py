"""Shared fixtures: small generated digit data, the real MNIST folder, running the CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from digitlab.data.dataset import Dataset

MNIST_FOLDER = Path(os.environ.get("DIGITLAB_DATA", Path(__file__).parents[2] / "shared/data/mnist"))


def make_digits(count: int = 60, seed: int = 0, labelled: bool = True) -> Dataset:
    """Images with every pixel value 0..255 somewhere, labels cycling through 0..9."""
    generator = np.random.default_rng(seed)
    images = generator.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    images[:, :4] = 0  # a black margin, as digits have
    labels = np.arange(count) % 10 if labelled else None
    return Dataset(images, labels, name="generated")


@pytest.fixture
def digits() -> Dataset:
    return make_digits()


@pytest.fixture
def mnist_folder() -> Path:
    if not (MNIST_FOLDER / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("real MNIST files not found; set DIGITLAB_DATA")
    return MNIST_FOLDER


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or fills the user's real cache, or reaches the internet."""
    monkeypatch.setenv("DIGITLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("DIGITLAB_MIRRORS", "http://127.0.0.1:9/")
    monkeypatch.delenv("DIGITLAB_OFFLINE", raising=False)


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run `digitlab ARGS...` in this process; returns exit code and captured output."""
    from digitlab.cli import commands as cli

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["digitlab", *map(str, args)])
        capsys.readouterr()
        try:
            cli.main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def make_learnable_digits(count: int = 200, seed: int = 0) -> Dataset:
    """Noisy images whose label is written as a bright bar at a label-dependent row: easy to learn."""
    generator = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = generator.integers(0, 60, size=(count, 28, 28), dtype=np.uint8)
    for index, label in enumerate(labels):
        row = 3 + 2 * label
        images[index, row:row + 2, 4:24] = 255
    return Dataset(images, labels, name="learnable")


@pytest.fixture(scope="module")
def data_npz(tmp_path_factory):
    """A small learnable dataset with train and test parts, as an .npz file, shared by a module."""
    from digitlab.data.convert import convert

    folder = tmp_path_factory.mktemp("data")
    return convert({"train": make_learnable_digits(200), "test": make_learnable_digits(60, seed=1)},
                   folder / "learnable.npz")
