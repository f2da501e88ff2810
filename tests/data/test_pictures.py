"""Saving figures as PNG (digitlab.data.pictures.save): what savefig draws, drawn once."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import make_digits
from digitlab.data import pictures
from digitlab.errors import OutputExistsError


def pixels(png) -> np.ndarray:
    with Image.open(png) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def test_save_writes_the_pixels_savefig_draws(tmp_path) -> None:
    digits = make_digits(12)
    drawn = io.BytesIO()
    pictures.sample_grid(digits, rows=2, columns=6).savefig(drawn, dpi=110)  # laid out: constrained
    path = pictures.save(pictures.sample_grid(digits, rows=2, columns=6), tmp_path / "samples.png")
    assert path == tmp_path / "samples.png"
    np.testing.assert_array_equal(pixels(path), pixels(drawn))
    with Image.open(path) as image:
        assert image.info["dpi"] == pytest.approx((110, 110), abs=0.01)


def test_save_leaves_the_figure_as_it_was(tmp_path) -> None:
    figure = pictures.class_distribution([make_digits(30)])
    canvas, dpi = figure.canvas, figure.dpi
    pictures.save(figure, tmp_path / "classes.png", dpi=150)
    assert figure.canvas is canvas and figure.dpi == dpi
    assert pixels(tmp_path / "classes.png").shape[:2] == (round(3.6 * 150), round(5 * 150))
    assert figure._repr_png_().startswith(b"\x89PNG")  # still shows in a notebook


def test_save_refuses_a_file_there_unless_forced(tmp_path) -> None:
    figure = pictures.single_image(make_digits(1), 0)
    path = tmp_path / "image.png"
    path.write_bytes(b"kept")
    with pytest.raises(OutputExistsError):
        pictures.save(figure, path)
    assert path.read_bytes() == b"kept"
    pictures.save(figure, path, force=True)
    assert pixels(path).ndim == 3
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["image.png"]  # no temporary left
