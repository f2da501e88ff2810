"""The run folder: where each run goes, what it holds and how it is read back.

A run folder is written by training (and by ensembles and sweeps, whose members are runs):

    runs/<time>-<recipe>/
        config.toml     the settings it was trained with, and the library versions
        data/           data it was given in memory (arrays, DataFrames), which config.toml names
        history.csv     one row per epoch
        checkpoints/    the last and the best epoch, while it trains (see training.checkpoints)
        model.keras     the trained model
        model.onnx      the same model for ONNX Runtime, which predict, evaluate, submit and serve read
        report.html     the report, and its pictures
        metrics.json    the final figures: written last, so its presence means finished
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digitlab.compute import backend
from digitlab.outputs import write_text
from digitlab.recipes.config import TrainingConfig, apply, read_toml

if TYPE_CHECKING:
    import pandas

    from digitlab.data.dataset import Dataset
    from digitlab.evaluation.metrics import Evaluation

CONFIG_FILE = "config.toml"
HISTORY_FILE = "history.csv"
MODEL_FILE = "model.keras"  # the name digitlab.inference.model_files looks for in a folder
METRICS_FILE = "metrics.json"
DATA_FOLDER = "data"


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    keras = backend.keras()
    versions = {"python": platform.python_version(), "keras": keras.__version__,
                "backend": keras.backend.backend()}
    for package in ("digitlab", "tensorflow", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


def new_folder(runs_dir: str | Path, kind: str) -> Path:
    """A new, empty folder `runs_dir`/<time>-<kind>, then -2, -3, ... when that is taken.

    Each name is claimed by creating it, which fails if it exists, so processes starting runs at
    the same moment (an ensemble's members on Ray) each get their own folder.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(runs_dir) / f"{stamp}-{kind}"
    base.parent.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        folder = base if number == 1 else base.with_name(f"{base.name}-{number}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            number += 1


def new_run_folder(config: TrainingConfig) -> Path:
    """A new, empty run folder for a training run: `runs_dir`/<time>-<recipe>."""
    return new_folder(config.runs_dir, config.recipe)


def keep_data(folder: Path, part: str, dataset: Dataset) -> str:
    """Write data given in memory into the run folder, as data/<part>.npz (Keras's layout, one
    part), and return the source that reads it back: the file's absolute path, which means the
    same from any working folder, as a resumed run or `digitlab train --config` needs."""
    from digitlab.data.formats import npz

    path = Path(folder).resolve() / DATA_FOLDER / f"{part}.npz"
    return str(npz.write(path, {part: dataset}))


def run_config(folder: Path) -> TrainingConfig:
    """The configuration a run folder was trained with: its config.toml, library versions aside."""
    config_path = Path(folder) / CONFIG_FILE
    settings = read_toml(config_path)
    for table in ("versions", "ensemble", "finetune"):  # what the run was made with besides training
        settings.pop(table, None)
    config = apply(TrainingConfig(), settings, str(config_path))
    config.validate()
    return config


def report_split(evaluations: Mapping[str, Evaluation]) -> str | None:
    """The split a run's report shows: the test data, else the validation split."""
    return next((name for name in ("test", "validation") if name in evaluations), None)


def finish_run(
    folder: Path,
    metrics: dict[str, Any],
    evaluations: Mapping[str, Evaluation],
    datasets: Mapping[str, Dataset],
    history: pandas.DataFrame | None,
    title: str,
    details: dict[str, str],
    shown: str | None = None,
    meanwhile: Callable[[], None] = lambda: None,
) -> None:
    """Write the end of a trained run (or ensemble) into its folder.

    Each evaluated split's accuracy, loss and calibration error join `metrics`; the report and
    its pictures show the split `shown` (by default the one `report_split` picks), the curves
    marking the epoch kept, `metrics["best_epoch"]` (the last when None). `meanwhile` (saving
    the model, say) runs while the report is drawn, in the process `report_process.start` started
    if there is one. metrics.json is written last: its presence is what marks a run finished, so
    a run stopped while finishing resumes and finishes again.
    """
    from digitlab.evaluation import report_process

    for name, evaluation in evaluations.items():
        metrics[f"{name}_accuracy"] = round(float(evaluation.accuracy), 6)
        metrics[f"{name}_loss"] = round(float(evaluation.loss), 6)
        metrics[f"{name}_calibration_error"] = round(float(evaluation.calibration_error), 6)
    shown = shown or report_split(evaluations)
    if shown is not None:
        report_process.write_report(folder, evaluations[shown], datasets[shown], history, meanwhile, title=title,
                                    details=details, kept_epoch=metrics.get("best_epoch"))
    else:
        meanwhile()
    write_text(folder / METRICS_FILE, json.dumps(metrics, indent=2) + "\n", force=True)
