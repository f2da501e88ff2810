"""Figures of training and evaluation: curves, confusion matrices, mistakes, model diagrams."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib import patches
from matplotlib.figure import Figure

from digitlab.data.pictures import InlineFigure

if TYPE_CHECKING:
    import pandas


def _draw_series(axis, epochs, values, label: str, colour: str) -> None:
    values = np.asarray(values, dtype=np.float64)
    axis.plot(epochs, values, color=colour, marker="o", markersize=3, linewidth=1.5, label=label)


def _whole_epochs(axis) -> None:
    """Epoch ticks at whole numbers only, even for a run of one epoch."""
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def training_curves(history: pandas.DataFrame, kept_epoch: int | None = None) -> Figure:
    """Accuracy and loss per epoch, training against validation, and the learning rate if known.

    `history` has a row per epoch with columns `epoch` (1-based), `loss`, `accuracy` and,
    where recorded, `val_loss`, `val_accuracy` and `learning_rate`. `kept_epoch` is the epoch
    whose weights the model has (a run's `best_epoch`, chosen by its `checkpoint_monitor`);
    None means the last epoch, as training leaves a model without `keep_best`. Both the accuracy
    and the loss panel mark it.
    """
    if len(history) == 0:
        raise ValueError("the training history has no epochs to draw")
    epochs = (
        np.asarray(history["epoch"]) if "epoch" in history else np.arange(1, len(history) + 1)
    )

    def recorded(column: str) -> bool:
        return column in history and bool(history[column].notna().any())

    kept_epoch = int(epochs[-1]) if kept_epoch is None else int(kept_epoch)
    kept = epochs == kept_epoch

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
        marked_column = f"val_{metric}" if recorded(f"val_{metric}") else metric
        if recorded(marked_column) and kept.any():
            value = float(np.asarray(history[marked_column], dtype=np.float64)[kept][0])
            axis.plot(
                kept_epoch, value, linestyle="none", marker="*", markersize=12,
                color="tab:red", label=f"kept: epoch {kept_epoch} ({value:.4g})",
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
        _whole_epochs(axis)
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
            # in_layout=False: a cell's number lies inside the axes, so the layout need not measure it
            axis.text(column, row, cell_text(value), ha="center", va="center",
                      fontsize=7, color=colour, in_layout=False)
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


def _titled_grid(images: np.ndarray, titles: list[str], colours: list[str], columns: int,
                 title: str | None) -> Figure:
    """Images in a grid of `columns`, each with its title in its colour; spare cells blank."""
    count = len(images)
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    figure = InlineFigure(figsize=(columns * 1.75, rows * 1.9 + 0.4), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, text, colour in zip(axes.flat, images, titles, colours):
        axis.imshow(image, cmap="gray", vmin=0, vmax=255)
        # y=1.0 as matplotlib would place it over axes that are off, without its slow search
        axis.set_title(text, fontsize=8, color=colour, y=1.0)
    if title:
        figure.suptitle(title)
    return figure


def _percent(confidence: float) -> int:
    # Round down, so that only a certainty of exactly 1 reads 100%.
    return int(np.floor(float(confidence) * 100))


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
    titles = [f"true {true} / predicted {predicted} ({_percent(confidence)}%)"
              for true, predicted, confidence in zip(true_labels, predicted_labels, confidences)]
    return _titled_grid(images, titles, ["black"] * count, columns, title)


def predictions_gallery(
    images: np.ndarray,
    predicted_labels: np.ndarray,
    confidences: np.ndarray,
    true_labels: np.ndarray | None = None,
    columns: int = 5,
    title: str | None = None,
) -> Figure:
    """Images titled with the digit predicted and its confidence, 'predicted 7 (99%)'.

    With `true_labels`, a wrong prediction is titled in red with the true digit beside it:
    'predicted 9 (62%), true 4'.
    """
    images = np.asarray(images)
    count = len(images)
    if count == 0:
        raise ValueError("no images to show")
    if not len(predicted_labels) == len(confidences) == count or (
            true_labels is not None and len(true_labels) != count):
        raise ValueError("images, predictions, confidences and labels must be equally long")
    titles, colours = [], []
    for index, (predicted, confidence) in enumerate(zip(predicted_labels, confidences)):
        text = f"predicted {predicted} ({_percent(confidence)}%)"
        wrong = true_labels is not None and true_labels[index] != predicted
        titles.append(f"{text}, true {true_labels[index]}" if wrong else text)
        colours.append("tab:red" if wrong else "black")
    return _titled_grid(images, titles, colours, columns, title)


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
    figure = InlineFigure(figsize=(7.5, 4.4), layout="constrained")
    axis = figure.subplots()
    for name, history in histories.items():
        if metric not in history or len(history) == 0:
            continue
        is_best = name == best
        axis.plot(history["epoch"], history[metric], marker="o", markersize=3,
                  linewidth=2.6 if is_best else 1.0, alpha=1.0 if is_best else 0.6,
                  color="tab:red" if is_best else None, label=f"{name} (best)" if is_best else name)
    _whole_epochs(axis)
    axis.set_xlabel("epoch")
    axis.set_ylabel(metric)
    axis.set_title(f"{metric} of each trial")
    axis.legend(fontsize=7, ncol=2 if len(histories) > 8 else 1)
    return figure
