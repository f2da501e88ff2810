"""Pictures of data as matplotlib figures: they show inline in notebooks and save as PNG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib import patches
from matplotlib.figure import Figure

from digitlab.dataset import NUM_CLASSES, Dataset
from digitlab.outputs import write_file


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


def sample_grid(dataset: Dataset, rows: int = 5, columns: int = 10, seed: int = 0) -> Figure:
    """A grid of random images, each titled with its label when there is one."""
    count = min(rows * columns, len(dataset))
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


def save(figure: Figure, path: str | Path, force: bool = False, dpi: int = 110) -> Path:
    """Write a figure as a PNG, atomically."""
    return write_file(path, lambda temporary: figure.savefig(temporary, dpi=dpi), force)


# Figures of training and evaluation.

from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    import pandas


def _draw_series(axis, epochs, values, label: str, colour: str) -> None:
    values = np.asarray(values, dtype=np.float64)
    axis.plot(epochs, values, color=colour, marker="o", markersize=3, linewidth=1.5, label=label)


def training_curves(history: pandas.DataFrame) -> Figure:
    """Accuracy and loss per epoch, training against validation, and the learning rate if known.

    `history` has a row per epoch with columns `epoch` (1-based), `loss`, `accuracy` and,
    where recorded, `val_loss`, `val_accuracy` and `learning_rate`.
    """
    from matplotlib.ticker import MaxNLocator

    if len(history) == 0:
        raise ValueError("the training history has no epochs to draw")
    epochs = (
        np.asarray(history["epoch"]) if "epoch" in history else np.arange(1, len(history) + 1)
    )

    def recorded(column: str) -> bool:
        return column in history and bool(history[column].notna().any())

    show_learning_rate = recorded("learning_rate")
    panels = 3 if show_learning_rate else 2
    figure = InlineFigure(figsize=(4.6 * panels, 3.6), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    for axis, metric in zip(axes, ("accuracy", "loss")):
        drawn = False
        for column, label, colour in (
            (metric, "training", "tab:blue"),
            (f"val_{metric}", "validation", "tab:orange"),
        ):
            if recorded(column):
                _draw_series(axis, epochs, history[column], label, colour)
                drawn = True
        best_column = f"val_{metric}" if recorded(f"val_{metric}") else metric
        if recorded(best_column):
            values = np.asarray(history[best_column], dtype=np.float64)
            best = int(np.nanargmax(values) if metric == "accuracy" else np.nanargmin(values))
            axis.plot(
                epochs[best], values[best], linestyle="none", marker="*", markersize=12,
                color="tab:red", label=f"best {values[best]:.4g} (epoch {epochs[best]})",
            )
        if drawn:
            axis.legend(fontsize=8)
        else:
            axis.text(0.5, 0.5, "not recorded", ha="center", va="center",
                      transform=axis.transAxes, color="gray")
        axis.set_title(metric)
        axis.set_ylabel(metric)
    if show_learning_rate:
        axis = axes[2]
        rates = np.asarray(history["learning_rate"], dtype=np.float64)
        _draw_series(axis, epochs, rates, "learning rate", "tab:green")
        if np.nanmin(rates) > 0:
            axis.set_yscale("log")
        axis.set_title("learning rate")
        axis.set_ylabel("learning rate")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    return figure


def confusion_matrix_figure(confusion: np.ndarray, normalize: bool = False) -> Figure:
    """A heatmap of a confusion matrix (rows true, columns predicted), each cell annotated.

    With `normalize`, cells show the percentage of each true digit's images instead of counts.
    Cells with no images are left blank so the mistakes stand out.
    """
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {confusion.shape}")
    classes = len(confusion)
    if normalize:
        row_totals = confusion.sum(axis=1, keepdims=True).astype(np.float64)
        values = np.zeros(confusion.shape)
        np.divide(100 * confusion, row_totals, out=values, where=row_totals != 0)
        highest = 100.0
    else:
        values = confusion
        highest = max(float(confusion.max()), 1.0)

    def cell_text(value: float) -> str:
        if not normalize:
            return f"{int(value):,}"
        return "<0.1" if value < 0.05 else f"{value:.1f}"

    figure = InlineFigure(figsize=(6.6, 5.6), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(values, cmap="Blues", vmin=0, vmax=highest)
    for (row, column), value in np.ndenumerate(values):
        if confusion[row, column]:
            colour = "white" if value > highest / 2 else "black"
            axis.text(column, row, cell_text(value), ha="center", va="center",
                      fontsize=7, color=colour)
    axis.set_xticks(range(classes))
    axis.set_yticks(range(classes))
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if normalize:
        axis.set_title("confusion matrix (% of each true digit)")
    else:
        axis.set_title(f"confusion matrix ({int(confusion.sum()):,} images)")
    figure.colorbar(image, ax=axis, shrink=0.85,
                    label="% of true digit" if normalize else "images")
    return figure


def mistakes_gallery(
    images: np.ndarray,
    true_labels: np.ndarray,
    predicted_labels: np.ndarray,
    confidences: np.ndarray,
    columns: int = 6,
    title: str | None = None,
) -> Figure:
    """A grid of wrongly recognised images, each titled 'true 4 / predicted 9 (97%)'.

    `confidences` are the model's probabilities (0..1) for the predicted digits.
    """
    images = np.asarray(images)
    count = len(images)
    if count == 0:
        raise ValueError("no images to show")
    if not len(true_labels) == len(predicted_labels) == len(confidences) == count:
        raise ValueError("images, labels, predictions and confidences must be equally long")
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    figure = InlineFigure(figsize=(columns * 1.75, rows * 1.9 + 0.4), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, true, predicted, confidence in zip(
        axes.flat, images, true_labels, predicted_labels, confidences
    ):
        axis.imshow(image, cmap="gray", vmin=0, vmax=255)
        # Round down, so that only a certainty of exactly 1 reads 100%.
        percent = int(np.floor(float(confidence) * 100))
        axis.set_title(f"true {true} / predicted {predicted} ({percent}%)", fontsize=8)
    if title:
        figure.suptitle(title)
    return figure


def _layer_details(layer) -> str:
    config = layer.get_config()
    parts = []
    for key in ("filters", "units", "rate", "stddev"):
        if key in config:
            parts.append(f"{key} {config[key]}")
    for key in ("kernel_size", "pool_size"):
        if key in config and config[key] is not None:
            parts.append("x".join(map(str, config[key])))
    if config.get("padding") == "same":
        parts.append("same")
    activation = config.get("activation")
    if activation and activation != "linear":
        parts.append(str(activation))
    return ", ".join(parts)


def model_diagram(model) -> Figure:
    """The model's layers top to bottom, each with its settings, output shape and weights."""
    layers = model.layers
    height = 0.55 * len(layers) + 1.2
    figure = InlineFigure(figsize=(7.5, height))
    axis = figure.add_axes((0, 0, 1, 1))
    axis.set_xlim(0, 1)
    axis.set_ylim(len(layers) + 0.6, -1.0)
    axis.axis("off")
    axis.text(0.5, -0.55, f"{model.name}: {model.count_params():,} weights", ha="center",
              va="center", fontsize=11, weight="bold")
    for row, layer in enumerate(layers):
        shape = tuple(layer.output.shape[1:]) if hasattr(layer, "output") else ()
        weights = layer.count_params()
        colour = "#dbe8f6" if weights else "#eeeeee"
        axis.add_patch(patches.FancyBboxPatch(
            (0.08, row - 0.32), 0.84, 0.64, boxstyle="round,pad=0.01", facecolor=colour, edgecolor="#4a6d8c"))
        details = _layer_details(layer)
        axis.text(0.11, row, f"{type(layer).__name__}" + (f"  ({details})" if details else ""),
                  va="center", fontsize=8.5)
        axis.text(0.89, row, f"{shape}   {weights:,}", va="center", ha="right", fontsize=8, color="#333333")
        if row:
            axis.annotate("", xy=(0.5, row - 0.33), xytext=(0.5, row - 0.67),
                          arrowprops={"arrowstyle": "->", "color": "#4a6d8c"})
    return figure


def sweep_curves(histories: dict[str, pandas.DataFrame], metric: str, best: str) -> Figure:
    """A sweep's trials: `metric` per epoch for each trial (`histories` by trial name), the
    `best` trial drawn bold; a trial stopped early ends where it stopped."""
    from matplotlib.ticker import MaxNLocator

    figure = InlineFigure(figsize=(7.5, 4.4), layout="constrained")
    axis = figure.subplots()
    for name, history in histories.items():
        if metric not in history or len(history) == 0:
            continue
        is_best = name == best
        axis.plot(history["epoch"], history[metric], marker="o", markersize=3,
                  linewidth=2.6 if is_best else 1.0, alpha=1.0 if is_best else 0.6,
                  color="tab:red" if is_best else None, label=f"{name} (best)" if is_best else name)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.set_ylabel(metric)
    axis.set_title(f"{metric} of each trial")
    axis.legend(fontsize=7, ncol=2 if len(histories) > 8 else 1)
    return figure
