"""How long a run's report takes to draw its pictures, against the plain way of drawing them.

Run: python bench/report_pictures.py [--rounds 3] [--baseline d9b55bd]
The evaluation is generated: 10,000 test images, about 1% of them mistaken, and a 3-epoch history
whose learning rate falls over four decades (a log-scale panel), as `digitlab train` leaves them.
`write_report` draws its four pictures and writes report.html into a temporary folder. The
baseline is the same `write_report` with the figures of commit --baseline (read with `git show`)
each saved by plain `figure.savefig(path, dpi=110)`, as digitlab drew them before. After a warm-up
(fonts, caches), rounds take turns, so that a slow spell of a shared machine falls on both; the
figures are medians. Timings are of whichever CPU cores this machine has; on a shared machine read
them as upper bounds.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from digitlab.data import pictures
from digitlab.data.dataset import Dataset
from digitlab.evaluation import report
from digitlab.evaluation.metrics import Evaluation
from digitlab.outputs import write_file

ROOT = Path(__file__).resolve().parents[1]
FIGURES_FILE = "src/digitlab/evaluation/figures.py"
IMAGES = 10_000
MISTAKEN_SHARE = 0.01


def generated_evaluation(seed: int = 0) -> tuple[Evaluation, Dataset]:
    generator = np.random.default_rng(seed)
    images = generator.integers(1, 256, size=(IMAGES, 28, 28), dtype=np.uint8)
    images[generator.random(images.shape) < 0.8] = 0  # MNIST-like: four pixels in five are blank
    labels = generator.integers(0, 10, size=IMAGES)
    predicted = labels.copy()
    mistaken = generator.random(IMAGES) < MISTAKEN_SHARE
    predicted[mistaken] = (labels[mistaken] + generator.integers(1, 10, size=mistaken.sum())) % 10
    logits = generator.normal(0, 0.5, size=(IMAGES, 10))
    logits[np.arange(IMAGES), predicted] += generator.uniform(3, 12, size=IMAGES)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Evaluation(probabilities.astype(np.float32), labels), Dataset(images, labels, name="mnist-test")


def generated_history() -> pd.DataFrame:
    return pd.DataFrame({
        "epoch": [1, 2, 3], "accuracy": [0.9505, 0.9890, 0.9924], "loss": [0.666, 0.561, 0.547],
        "val_accuracy": [0.9853, 0.9897, 0.9908], "val_loss": [0.566, 0.549, 0.544],
        "learning_rate": [1.5e-2, 1.2e-3, 2e-6], "epoch_seconds": [12.6, 7.7, 7.6],
    })


def module_at(commit: str, path: str) -> types.ModuleType:
    """The module in `path` as it was at `commit`, without touching the working tree."""
    source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    module = types.ModuleType(f"baseline_{Path(path).stem}")
    exec(compile(source, f"{commit}:{path}", "exec"), module.__dict__)
    return module


def plain_save(figure, path, force: bool = False, dpi: int = 110) -> Path:
    return write_file(path, lambda temporary: figure.savefig(temporary, dpi=dpi), force)


@contextlib.contextmanager
def drawn_by(figures: types.ModuleType | None) -> Iterator[None]:
    """`write_report` drawing with `figures` and saving with `plain_save`; None: as it is."""
    saved = report.figures, pictures.save
    if figures is not None:
        report.figures, pictures.save = figures, plain_save
    try:
        yield
    finally:
        report.figures, pictures.save = saved


def seconds_to_draw(pictures_drawn: dict[str, Callable[[], Figure]], folder: Path, evaluation: Evaluation,
                    dataset: Dataset, history: pd.DataFrame) -> dict[str, float]:
    """Seconds to draw and save each picture alone, then to write the whole report."""
    seconds = {}
    for name, draw in pictures_drawn.items():
        start = time.perf_counter()
        pictures.save(draw(), folder / name, force=True)
        seconds[name] = time.perf_counter() - start
    start = time.perf_counter()
    report.write_report(folder, evaluation, dataset, history, "benchmark")
    seconds["write_report"] = time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default="d9b55bd", help="the commit whose drawing is the baseline")
    arguments = parser.parse_args()
    evaluation, dataset = generated_evaluation()
    history = generated_history()
    pictures_drawn = {
        report.CURVES_NAME: lambda: report.figures.training_curves(history),
        report.CONFUSION_NAME: lambda: report.figures.confusion_matrix_figure(evaluation.confusion),
        report.CONFUSION_NORMALIZED_NAME: lambda: report.figures.confusion_matrix_figure(
            evaluation.confusion, normalize=True),
        report.MISTAKES_NAME: lambda: report.mistakes_figure(evaluation, dataset),
    }
    variants = {"baseline": module_at(arguments.baseline, FIGURES_FILE), "digitlab": None}
    seconds: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for round_ in range(arguments.rounds + 1):  # round 0 warms up
            for variant, figures in variants.items():
                with drawn_by(figures):
                    times = seconds_to_draw(pictures_drawn, folder, evaluation, dataset, history)
                if round_:
                    for name, value in times.items():
                        seconds.setdefault((variant, name), []).append(value)
    print(f"report pictures of {IMAGES:,} test images ({evaluation.error_count} mistaken) and "
          f"{len(history)} epochs, median of {arguments.rounds} rounds:")
    print(f"  {'':38s} {'baseline':>9s} {'digitlab':>9s}  speed-up")
    for name in [*pictures_drawn, "write_report"]:
        baseline = statistics.median(seconds["baseline", name])
        digitlab = statistics.median(seconds["digitlab", name])
        label = "write_report (all four and the page)" if name == "write_report" else name
        print(f"  {label:38s} {baseline:8.2f}s {digitlab:8.2f}s  {baseline / digitlab:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
