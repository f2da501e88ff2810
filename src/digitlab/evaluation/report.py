"""A static HTML report of an evaluation: headline figures, pictures and a per-digit table.

The report is one self-contained page (inline CSS, no scripts, nothing fetched from the web)
beside the PNGs it shows, so a run folder can be opened, copied or mailed as it is.
"""

from __future__ import annotations

import datetime
import html
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from digitlab import __version__
from digitlab.data import pictures
from digitlab.data.dataset import Dataset
from digitlab.errors import DigitlabError
from digitlab.evaluation import figures
from digitlab.evaluation.metrics import MOST_MISTAKES_SHOWN, Evaluation
from digitlab.outputs import check_new, write_text

if TYPE_CHECKING:
    import pandas

REPORT_NAME = "report.html"
CURVES_NAME = "curves.png"
CONFUSION_NAME = "confusion.png"
CONFUSION_NORMALIZED_NAME = "confusion-normalized.png"
MISTAKES_NAME = "mistakes.png"

STYLE = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --accent: #2563eb;
        --soft: #eff4ff; --bad: #fdecec; }
* { box-sizing: border-box; }
body { margin: 0; background: #f7f8fa; color: var(--ink);
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 2rem 1.5rem 3rem; }
h1 { margin: 0 0 .25rem; font-size: 1.8rem; }
h2 { margin: 0 0 1rem; font-size: 1.15rem; }
.subtitle, footer { color: var(--muted); font-size: .9rem; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px;
          padding: 1.25rem 1.5rem; margin-top: 1.25rem; }
.headline { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr));
            gap: 1rem; background: none; border: none; padding: 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px;
        padding: 1rem 1.25rem; }
.card .value { font-size: 1.9rem; font-weight: 600; color: var(--accent); }
.card .label { color: var(--muted); font-size: .85rem; text-transform: uppercase;
               letter-spacing: .04em; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: .4rem .75rem; border-bottom: 1px solid var(--line); text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { color: var(--muted); font-weight: 600; font-size: .85rem; }
table.details { width: auto; }
table.details th { text-align: left; color: var(--muted); font-weight: 500; }
table.details td { text-align: left; }
td.bar { background: linear-gradient(90deg, var(--soft) var(--share), transparent var(--share)); }
tr.worst td { background-color: var(--bad); }
.pictures { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 1rem; }
figure { margin: 0; }
figure img { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: .85rem; margin-top: .3rem; }
footer { margin-top: 1.5rem; text-align: center; }
"""


def _escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def _picture(name: str, caption: str) -> str:
    return (
        f'<figure><a href="{_escape(name)}"><img src="{_escape(name)}" alt="{_escape(caption)}">'
        f"</a><figcaption>{_escape(caption)}</figcaption></figure>"
    )


def _card(value: str, label: str) -> str:
    return (
        f'<div class="card"><div class="value">{_escape(value)}</div>'
        f'<div class="label">{_escape(label)}</div></div>'
    )


def _details_section(details: dict[str, str]) -> str:
    rows = "".join(
        f"<tr><th>{_escape(name)}</th><td>{_escape(value)}</td></tr>"
        for name, value in details.items()
    )
    return f'<section><h2>Details</h2><table class="details">{rows}</table></section>'


def _per_class_section(evaluation: Evaluation) -> str:
    confusion = evaluation.confusion
    scored = [row for row in evaluation.per_class if row["support"]]
    worst_digit = min(scored, key=lambda row: row["f1"])["digit"] if scored else None
    rows = []
    for row in evaluation.per_class:
        digit = row["digit"]
        wrong = confusion[digit].copy()
        wrong[digit] = 0
        errors = int(wrong.sum())
        confused_with = f"{int(wrong.argmax())} ({int(wrong.max()):,})" if errors else "–"
        cells = [f"<td>{digit}</td>"]
        for name in ("precision", "recall", "f1"):
            share = f"{100 * row[name]:.1f}%"
            cells.append(f'<td class="bar" style="--share: {share}">{row[name]:.4f}</td>')
        cells += [
            f"<td>{row['support']:,}</td>",
            f"<td>{errors:,}</td>",
            f"<td>{_escape(confused_with)}</td>",
        ]
        css_class = ' class="worst"' if digit == worst_digit and evaluation.error_count else ""
        rows.append(f"<tr{css_class}>{''.join(cells)}</tr>")
    header = "".join(
        f"<th>{name}</th>"
        for name in ("digit", "precision", "recall", "F1", "support", "errors",
                     "most often taken for")
    )
    note = (
        '<p class="subtitle">The row in red is the digit with the lowest F1.</p>'
        if worst_digit is not None and evaluation.error_count
        else ""
    )
    body = "\n".join(rows)
    return (
        '<section><h2>Per digit</h2><table class="per-class">'
        f"<thead><tr>{header}</tr></thead>\n<tbody>\n{body}\n</tbody></table>{note}</section>"
    )


def _page(
    title: str,
    evaluation: Evaluation,
    dataset: Dataset,
    details: dict[str, str],
    curves: bool,
    mistakes_shown: int,
) -> str:
    written = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    errors = evaluation.error_count
    headline = "".join([
        _card(f"{100 * evaluation.accuracy:.2f}%", "accuracy"),
        _card(f"{errors:,} of {len(evaluation):,}", "wrong"),
        _card(f"{evaluation.loss:.4f}", "loss (cross-entropy)"),
        _card(f"{evaluation.macro_f1:.4f}", "macro F1"),
        _card(f"{100 * evaluation.calibration_error:.2f}%", "calibration error"),
    ])
    sections = [f'<section class="headline">{headline}</section>']
    if details:
        sections.append(_details_section(details))
    if curves:
        sections.append(
            "<section><h2>Training</h2>"
            + _picture(CURVES_NAME, "accuracy and loss per epoch")
            + "</section>"
        )
    sections.append(
        '<section><h2>Confusion</h2><div class="pictures">'
        + _picture(CONFUSION_NAME, "counts: rows are true digits, columns predicted ones")
        + _picture(CONFUSION_NORMALIZED_NAME, "the same as a percentage of each true digit")
        + "</div></section>"
    )
    if mistakes_shown:
        caption = f"the {mistakes_shown} most confident of {errors:,} mistakes"
        mistakes = _picture(MISTAKES_NAME, caption)
    else:
        mistakes = '<p class="subtitle">No mistakes: every image was recognised.</p>'
    sections.append(f"<section><h2>Mistakes</h2>{mistakes}</section>")
    sections.append(_per_class_section(evaluation))
    subtitle = f"Evaluated on {dataset.name}: {len(dataset):,} images"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<header><h1>{_escape(title)}</h1><p class="subtitle">{_escape(subtitle)}</p></header>
{chr(10).join(sections)}
<footer>Written {_escape(written)} by digitlab {_escape(__version__)}</footer>
</main>
</body>
</html>
"""


def mistakes_figure(
    evaluation: Evaluation, dataset: Dataset, count: int = MOST_MISTAKES_SHOWN
) -> Figure:
    """The `count` most confident mistakes of `evaluation` as a grid of `dataset`'s images.

    Each image is titled with its true digit, the predicted one and the model's confidence.
    When there are no mistakes, the figure says so.
    """
    if len(dataset) != len(evaluation):
        raise DigitlabError(
            f"the evaluation covers {len(evaluation):,} images but {dataset.name} has "
            f"{len(dataset):,}: it must be the dataset that was evaluated"
        )
    indices = evaluation.mistakes(count)
    if len(indices) == 0:
        figure = pictures.InlineFigure(figsize=(5, 1.2))
        figure.text(0.5, 0.5, f"No mistakes: every image of {dataset.name} was recognised.",
                    ha="center", va="center")
        return figure
    return figures.mistakes_gallery(
        dataset.images[indices],
        evaluation.labels[indices],
        evaluation.predictions[indices],
        evaluation.confidences[indices],
        title=f"the {len(indices)} most confident of {evaluation.error_count:,} mistakes on {dataset.name}",
    )


def write_report(
    folder: Path,
    evaluation: Evaluation,
    dataset: Dataset,
    history: pandas.DataFrame | None,
    title: str,
    details: dict[str, str] | None = None,
    force: bool = True,
    kept_epoch: int | None = None,
) -> Path:
    """Write the evaluation's pictures and `report.html` into `folder`; returns the report's path.

    `dataset` is the one evaluated (its images show the mistakes); `history` the per-epoch
    training figures, or None when there are none, and `kept_epoch` the epoch the model was
    kept from (None: the last; see `figures.training_curves`). Pictures a report does not show (curves
    without history, mistakes when there are none) are removed if left by an earlier report.
    """
    folder = Path(folder)
    if len(dataset) != len(evaluation):
        raise DigitlabError(
            f"the evaluation covers {len(evaluation):,} images but {dataset.name} has "
            f"{len(dataset):,}: it must be the dataset that was evaluated"
        )
    has_history = history is not None and len(history) > 0
    mistake_indices = evaluation.mistakes(MOST_MISTAKES_SHOWN)
    outputs = {
        CURVES_NAME: has_history,
        CONFUSION_NAME: True,
        CONFUSION_NORMALIZED_NAME: True,
        MISTAKES_NAME: len(mistake_indices) > 0,
        REPORT_NAME: True,
    }
    if folder.exists() and not folder.is_dir():
        raise DigitlabError(f"cannot write a report into {folder}: it is a file")
    # Refuse before writing anything, so a refusal never leaves half a report.
    for name, written in outputs.items():
        if written:
            check_new(folder / name, force)

    if has_history:
        pictures.save(figures.training_curves(history, kept_epoch), folder / CURVES_NAME, force=True)
    pictures.save(
        figures.confusion_matrix_figure(evaluation.confusion, normalize=False),
        folder / CONFUSION_NAME, force=True,
    )
    pictures.save(
        figures.confusion_matrix_figure(evaluation.confusion, normalize=True),
        folder / CONFUSION_NORMALIZED_NAME, force=True,
    )
    if len(mistake_indices):
        pictures.save(mistakes_figure(evaluation, dataset), folder / MISTAKES_NAME, force=True)
    for name, written in outputs.items():
        if not written and force:
            (folder / name).unlink(missing_ok=True)

    page = _page(title, evaluation, dataset, details or {}, has_history, len(mistake_indices))
    return write_text(folder / REPORT_NAME, page, force=True)
