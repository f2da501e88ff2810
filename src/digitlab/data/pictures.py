"""Pictures of data as matplotlib figures: they show inline in notebooks and save as PNG."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave

from digitlab.data.dataset import Dataset
from digitlab.outputs import write_file
from digitlab.shape import NUM_CLASSES


class InlineFigure(Figure):
    """A matplotlib Figure that Jupyter shows as a picture even when pyplot was never imported.

    IPython draws a plain Figure only once the inline backend is on (`%matplotlib inline` or an
    import of pyplot); without it, it prints `<Figure size ...>`. With the backend on, IPython's
    own drawing is used as for any Figure.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


MOST_COLUMNS = 10  # a sample grid is at most this wide


def grid_shape(count: int) -> tuple[int, int]:
    """(rows, columns) of a grid for `count` pictures: a row when they fit in one, else the
    squarest rectangle of at most `MOST_COLUMNS` columns that holds exactly `count` (6x6 for 36,
    5x10 for 50), else the squarest grid with its last row part-filled."""
    if count <= MOST_COLUMNS:
        return 1, max(count, 1)
    squarest = min(math.ceil(math.sqrt(count)), MOST_COLUMNS)
    columns = next((width for width in range(squarest, MOST_COLUMNS + 1) if count % width == 0), squarest)
    return -(-count // columns), columns


def sample_grid(dataset: Dataset, rows: int = 5, columns: int = 10, seed: int = 0,
                count: int | None = None) -> Figure:
    """A grid of random images, each titled with its label when there is one.

    With `count`, exactly that many images (or all, when the dataset has fewer) in a grid shaped
    to fit them (`grid_shape`), instead of `rows` x `columns`.
    """
    if count is None:
        count = min(rows * columns, len(dataset))
    else:
        count = min(count, len(dataset))
        rows, columns = grid_shape(count)
    if count == 0:
        raise ValueError(f"{dataset.name} has no images to show")
    rows = -(-count // columns)
    chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), size=count, replace=False))
    figure = InlineFigure(figsize=(columns * 1.0, rows * 1.15), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, chosen):
        axis.imshow(dataset.images[index], cmap="gray", vmin=0, vmax=255)
        title = f"#{index}" if dataset.labels is None else f"{dataset.labels[index]}  (#{index})"
        axis.set_title(title, fontsize=8)
    figure.suptitle(f"{dataset.name}: {count} of {len(dataset):,} images")
    return figure


def class_distribution(datasets: list[Dataset]) -> Figure:
    """Bar charts of how many images each digit has, one panel per labelled dataset."""
    labelled = [dataset for dataset in datasets if dataset.is_labelled]
    if not labelled:
        raise ValueError("no labelled data: the class distribution needs labels")
    figure = InlineFigure(figsize=(5 * len(labelled), 3.6), layout="constrained")
    axes = figure.subplots(1, len(labelled), squeeze=False)[0]
    for axis, dataset in zip(axes, labelled):
        counts = dataset.class_counts()
        bars = axis.bar(range(NUM_CLASSES), counts, color="tab:blue")
        axis.bar_label(bars, labels=[f"{count:,}" for count in counts], fontsize=7)
        axis.axhline(counts.mean(), color="gray", linestyle="--", linewidth=1, label="mean")
        axis.set_xticks(range(NUM_CLASSES))
        axis.set_xlabel("digit")
        axis.set_ylabel("images")
        axis.set_title(f"{dataset.name} ({len(dataset):,} images)")
        axis.legend(loc="lower right", fontsize=8)
    return figure


def single_image(dataset: Dataset, index: int) -> Figure:
    """One image, large, with its label and each pixel's value."""
    if not -len(dataset) <= index < len(dataset):
        raise IndexError(f"index {index} is outside 0..{len(dataset) - 1} of {dataset.name}")
    index %= len(dataset)
    pixels = dataset.images[index]
    figure = InlineFigure(figsize=(7, 7), layout="constrained")
    axis = figure.subplots()
    axis.imshow(pixels, cmap="gray", vmin=0, vmax=255)
    for (row, column), value in np.ndenumerate(pixels):
        if value:
            colour = "black" if value > 128 else "white"
            axis.text(column, row, str(value), ha="center", va="center", fontsize=4.5, color=colour)
    label = "" if dataset.labels is None else f", label {dataset.labels[index]}"
    axis.set_title(f"{dataset.name} #{index}{label}")
    axis.set_xticks([])
    axis.set_yticks([])
    return figure


# zlib's level for the PNGs: 3 packs as fast as 1 and within about 15% of the default 6's size,
# which takes twice as long.
PNG_COMPRESSION = 3


def _write_png(figure: Figure, path: Path, dpi: int) -> None:
    """Write the pixels `figure.savefig(path, dpi=dpi)` writes (matplotlib's savefig.* settings
    aside) in one drawing, where savefig makes two: one to lay the figure out, one to draw it.
    The figure keeps its canvas and dpi."""
    canvas, figure_dpi = figure.canvas, figure.dpi
    figure.dpi = dpi
    try:
        agg = FigureCanvasAgg(figure)
        agg.draw()
        imsave(path, agg.buffer_rgba(), format="png", dpi=dpi, pil_kwargs={"compress_level": PNG_COMPRESSION})
    finally:
        figure.set_canvas(canvas)
        figure.dpi = figure_dpi


def save(figure: Figure, path: str | Path, force: bool = False, dpi: int = 110) -> Path:
    """Write a figure as a PNG, atomically."""
    return write_file(path, lambda temporary: _write_png(figure, temporary, dpi), force)
