"""Training a model from a config: data, model, optimizer, schedule, callbacks, run folder."""

from __future__ import annotations

import functools
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digitlab import backend, plots
from digitlab.config import ConfigError, TrainingConfig, to_toml
from digitlab.dataset import Dataset
from digitlab.classifier_methods import ClassifierMethods
from digitlab.errors import DigitlabError
from digitlab.outputs import write_text

if TYPE_CHECKING:
    import pandas
    from matplotlib.figure import Figure

    from digitlab.classifier import Classifier
    from digitlab.evaluate import Evaluation


@dataclass
class Run(ClassifierMethods):
    """A finished training run: its folder, model, per-epoch history and final figures.

    `path` is the run folder (model.keras, history.csv, metrics.json, the pictures and
    report.html); `history` a pandas DataFrame with one row per epoch; `metrics` what
    metrics.json holds. `evaluation` is the model's evaluation at the end of training on
    `evaluation_data`: the test data, or the validation split when there is no test data.

    Evaluating, predicting and submitting go through `run.classifier`, a `Classifier` of the
    run's model; with `data=None` they use `evaluation_data` and its evaluation.
    """

    path: Path
    config: TrainingConfig
    model: Any  # keras.Model
    history: pandas.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)
    evaluation: Evaluation | None = field(default=None, repr=False)
    evaluation_data: Dataset | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        accuracy = self.metrics.get("test_accuracy", self.metrics.get("validation_accuracy"))
        shown = f", accuracy {accuracy:.4f}" if accuracy is not None else ""
        return f"Run({str(self.path)!r}, {self.config.recipe}{shown})"

    @functools.cached_property
    def classifier(self) -> Classifier:
        """A `Classifier` of the run's model, defaulting to the run's evaluation data."""
        from digitlab.classifier import Classifier

        return Classifier(self.model, self.path, default_data=self.evaluation_data,
                          default_evaluation=self.evaluation)

    def plot_curves(self) -> Figure:
        """Accuracy, loss and learning rate per epoch, training against validation."""
        return plots.training_curves(self.history)

@dataclass
class Splits:
    train: Dataset
    validation: Dataset | None
    test: Dataset | None


def prepare_data(config: TrainingConfig, offline: bool = False) -> Splits:
    """Training, validation and test data; the test part is only ever reported on.

    The training subset and validation split are drawn with `split_seed` (`seed` if None);
    with `bootstrap`, training then uses a same-size sample of the rest drawn with replacement
    using `seed`, so bagged ensemble members share one validation split.
    """
    from digitlab.sources import load_parts

    parts = load_parts(config.data, offline=offline)
    train = parts.get("train") or next(iter(parts.values()))
    if not train.is_labelled:
        raise ConfigError(f"training data {config.data} has no labels")
    validation = None
    split_seed = config.seed if config.split_seed is None else config.split_seed
    try:
        if config.train_limit is not None and config.train_limit < len(train):
            _, train = train.split(config.train_limit, seed=split_seed)
        if isinstance(config.validation, str):
            validation = next(iter(load_parts(config.validation, offline=offline).values()))
        elif config.validation:
            train, validation = train.split(config.validation, seed=split_seed)
    except ValueError as error:
        if isinstance(error, DigitlabError):
            raise
        raise ConfigError(f"{config.data}: {error}") from None
    if config.bootstrap:
        drawn = np.sort(np.random.default_rng(config.seed).integers(0, len(train), size=len(train)))
        train = train.subset(drawn, f"{train.name}-bootstrap")
    if config.test:
        test = next(iter(load_parts(config.test, offline=offline).values()))
    else:
        test = parts.get("test") if len(parts) > 1 else None
    if test is not None and not test.is_labelled:
        test = None
    return Splits(train, validation, test)


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


def new_run_folder(config: TrainingConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(config.runs_dir) / f"{stamp}-{config.recipe}"
    folder, number = base, 1
    while folder.exists():
        number += 1
        folder = base.with_name(f"{base.name}-{number}")
    folder.mkdir(parents=True)
    return folder


def _history_callback(keras, folder: Path, started: float):
    import pandas as pd

    class EpochLog(keras.callbacks.Callback):
        """Records each epoch's figures, learning rate and time, and rewrites history.csv."""

        def __init__(self):
            super().__init__()
            self.rows: list[dict[str, float]] = []
            self.epoch_started = started

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            row = {"epoch": epoch + 1, **{key: float(value) for key, value in (logs or {}).items()}}
            row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            row["epoch_seconds"] = time.perf_counter() - self.epoch_started
            self.rows.append(row)
            write_text(folder / "history.csv", pd.DataFrame(self.rows).to_csv(index=False), force=True)

        @property
        def frame(self):
            return pd.DataFrame(self.rows)

    return EpochLog()


def _best_weights_callback(keras, monitor: str):
    class KeepBest(keras.callbacks.Callback):
        """Remembers the weights of the best epoch by `monitor`."""

        def __init__(self):
            super().__init__()
            self.best_value: float | None = None
            self.best_epoch: int | None = None
            self.weights = None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(monitor)
            if value is None:
                return
            better = self.best_value is None or (
                value < self.best_value if "loss" in monitor else value > self.best_value
            )
            if better:
                self.best_value, self.best_epoch = float(value), epoch + 1
                self.weights = self.model.get_weights()

    return KeepBest()


def configure_threads(threads: int | None) -> None:
    if threads is None:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:
        print(f"note: TensorFlow already started; threads = {threads} applies from the next run",
              file=sys.stderr)


def train(
    config: TrainingConfig, offline: bool = False, verbose: int | None = None, callbacks: list | None = None
) -> Run:
    """Train a model as `config` says and write its run folder; returns the Run.

    `callbacks` are extra Keras callbacks, run after digitlab's own.
    """
    from digitlab import models, pipeline, schedules
    from digitlab.evaluate import evaluate
    from digitlab.report import write_report

    config.validate()
    keras = backend.keras()
    configure_threads(config.threads)
    keras.utils.set_random_seed(config.seed)
    splits = prepare_data(config, offline=offline)
    if config.model_file:
        models.load_user_models(config.model_file)
    model = models.create(config.model, **config.model_options)
    one_hot = config.label_smoothing > 0
    steps = config.steps_per_epoch or pipeline.steps_per_epoch(splits.train, config.batch_size)
    model.compile(
        optimizer=schedules.optimizer(config, steps * config.epochs),
        loss=(keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
              if one_hot else keras.losses.SparseCategoricalCrossentropy()),
        metrics=["accuracy"],
    )
    needs_validation = config.schedule == "plateau" or config.early_stopping_patience or config.keep_best
    if splits.validation is None and needs_validation and (
        config.schedule == "plateau" or config.early_stopping_patience
    ):
        raise ConfigError("the plateau schedule and early stopping need validation data (validation = 0 was given)")
    folder = new_run_folder(config)
    started = time.perf_counter()
    history_log = _history_callback(keras, folder, started)
    keep_best = _best_weights_callback(keras, config.checkpoint_monitor)
    extra_callbacks = list(callbacks or [])
    callbacks = [history_log, *schedules.epoch_callbacks(config)]
    if splits.validation is not None and config.keep_best:
        callbacks.append(keep_best)
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=config.early_stopping_monitor, patience=config.early_stopping_patience
        ))
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(folder / "tensorboard")))
    write_text(folder / "config.toml", to_toml(config.as_dict() | {"versions": library_versions()}), force=True)

    validation_data = None
    if splits.validation is not None:
        validation_data = pipeline.batches(splits.validation, 1024, config.seed, one_hot=one_hot, training=False)
    model.fit(
        pipeline.batches(splits.train, config.batch_size, config.seed, config.augmentation, one_hot),
        epochs=config.epochs,
        steps_per_epoch=steps,
        validation_data=validation_data,
        callbacks=[*callbacks, *extra_callbacks],
        verbose=(1 if sys.stdout.isatty() else 2) if verbose is None else verbose,
        shuffle=False,  # the pipeline shuffles
    )
    training_seconds = time.perf_counter() - started
    if keep_best.weights is not None:
        model.set_weights(keep_best.weights)
    model.save(folder / "model.keras")

    history = history_log.frame
    metrics: dict[str, Any] = {
        "recipe": config.recipe, "model": config.model, "parameters": int(model.count_params()),
        "epochs_run": len(history), "training_seconds": round(training_seconds, 2),
        "best_epoch": keep_best.best_epoch,
    }
    evaluated = {}
    for name, dataset in (("validation", splits.validation), ("test", splits.test)):
        if dataset is not None:
            evaluated[name] = evaluate(model, dataset)
            metrics[f"{name}_accuracy"] = round(float(evaluated[name].accuracy), 6)
            metrics[f"{name}_loss"] = round(float(evaluated[name].loss), 6)
    write_text(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n", force=True)
    shown_name = "test" if "test" in evaluated else "validation"
    if shown_name in evaluated:
        write_report(
            folder, evaluated[shown_name], splits.test if shown_name == "test" else splits.validation,
            history, title=f"digitlab run {folder.name}",
            details={"recipe": config.recipe, "model": config.model, "data": config.data,
                     "evaluated on": shown_name, "epochs": str(len(history)),
                     "training time": f"{training_seconds:.1f} s",
                     "parameters": f"{model.count_params():,}"},
        )
    return Run(folder, config, model, history, metrics,
               evaluation=evaluated.get(shown_name),
               evaluation_data=splits.test if shown_name == "test" else splits.validation)
