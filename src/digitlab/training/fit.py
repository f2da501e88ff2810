"""Training a model from a config: data, model, optimizer, schedule, callbacks, run folder."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.compute import backend
from digitlab.compute.devices import configure_threads, strategy_scope
from digitlab.data.dataset import Dataset
from digitlab.errors import INTERRUPTION_EXPLAINED, DigitlabError
from digitlab.evaluation import calibration
from digitlab.outputs import write_text
from digitlab.recipes.config import ConfigError, TrainingConfig, did_you_mean, spelled_as_allowed, to_toml
from digitlab.runs.folder import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    finish_run,
    keep_data,
    library_versions,
    new_run_folder,
    report_split,
    run_config,
)
from digitlab.runs.run import Run
from digitlab.training import checkpoints

TEST_IS_VALIDATION = "the epoch kept and the calibration were chosen on it, so it is no independent estimate"
# The source options that may be given as data in memory, and the part each is kept as in the run folder.
HELD_PARTS = {"data": "train", "validation": "validation", "test": "test"}


@dataclass
class Splits:
    train: Dataset
    validation: Dataset | None
    test: Dataset | None

    @property
    def test_is_validation(self) -> bool:
        """Whether the data reported on is the validation data itself (validation = "mnist:test")."""
        return self.test is not None and self.test is self.validation


def _same_digits(first: Dataset, second: Dataset) -> bool:
    return (len(first) == len(second) and np.array_equal(first.images, second.images)
            and np.array_equal(first.labels, second.labels))


def prepare_data(config: TrainingConfig, offline: bool = False, held: Mapping[str, Dataset] | None = None) -> Splits:
    """Training, validation and test data; the test part is only ever reported on.

    The training subset and validation split are drawn with `split_seed` (`seed` if None);
    with `bootstrap`, training then uses a same-size sample of the rest drawn with replacement
    using `seed`, so bagged ensemble members share one validation split. `held` gives data in
    memory for the source options data, validation and test, by option name, in place of their
    sources (see `train`).
    """
    from digitlab.data.sources import load_parts

    held = held or {}

    def load_parts_of(option: str) -> dict[str, Dataset]:
        if option in held:
            return {HELD_PARTS[option]: held[option]}
        return load_parts(getattr(config, option), offline=offline)

    parts = load_parts_of("data")
    train = parts.get("train") or next(iter(parts.values()))
    if not train.is_labelled:
        raise ConfigError(f"training data {config.data} has no labels")
    validation = None
    split_seed = config.seed if config.split_seed is None else config.split_seed
    try:
        if config.train_limit is not None and config.train_limit < len(train):
            _, limited = train.split(config.train_limit, seed=split_seed)
            train = limited.subset(slice(None), train.name)  # still the training data, and named so
        if isinstance(config.validation, str):
            validation = next(iter(load_parts_of("validation").values()))
        elif config.validation:
            train, validation = train.split(config.validation, seed=split_seed)
    except ValueError as error:
        if isinstance(error, DigitlabError):
            raise
        raise ConfigError(f"{config.data}: {error}") from None
    if validation is not None and not validation.is_labelled:
        raise ConfigError(f"validation data {config.validation} has no labels")
    if config.bootstrap:
        drawn = np.sort(np.random.default_rng(config.seed).integers(0, len(train), size=len(train)))
        train = train.subset(drawn, f"{train.name}-bootstrap")
    if config.test:
        test = next(iter(load_parts_of("test").values()))
    else:
        test = parts.get("test") if len(parts) > 1 else None
    if test is not None and not test.is_labelled:
        test = None
    if test is not None and validation is not None and _same_digits(test, validation):
        test = validation  # one set of digits, evaluated once
    return Splits(train, validation, test)


def _each_once(datasets: Mapping[str, Dataset], compute) -> dict[str, Any]:
    """`compute(dataset)` by name; a dataset given under two names is computed once."""
    done: dict[int, Any] = {}
    for dataset in datasets.values():
        if id(dataset) not in done:
            done[id(dataset)] = compute(dataset)
    return {name: done[id(dataset)] for name, dataset in datasets.items()}


def _evaluations(model, datasets: Mapping[str, Dataset]) -> dict[str, Any]:
    """Each dataset's evaluation by name; a dataset given under two names is evaluated once."""
    from digitlab.evaluation.metrics import evaluate

    return _each_once(datasets, lambda dataset: evaluate(model, dataset))






def _evaluate_and_calibrate(model, labelled: Mapping[str, Dataset], validation: Dataset | None
                            ) -> tuple[dict[str, Any], dict[str, Any], float | None]:
    """Each labelled dataset's evaluation before and after calibration, and the temperature
    (None without validation data), which is stored in the model's last layer.

    A model ending in a softmax Dense layer runs over each dataset once: its logits give both
    evaluations, softmax(logits) and softmax(logits / temperature), which is what the model
    gives before and after the temperature goes into its last layer. Any other is evaluated
    as it is, and not calibrated.
    """
    from digitlab.evaluation.metrics import Evaluation

    if calibration.final_softmax_layer(model) is None:
        evaluations = _evaluations(model, labelled)
        return evaluations, evaluations, None
    logits = _each_once(labelled, lambda dataset: calibration.logits(model, dataset.images))

    def evaluations(temperature: float) -> dict[str, Any]:
        return {name: Evaluation(calibration.softmax(logits[name], temperature).astype(np.float32), dataset.labels)
                for name, dataset in labelled.items()}

    uncalibrated = evaluations(1.0)
    if validation is None:
        return uncalibrated, uncalibrated, None
    validation_name = next(name for name, dataset in labelled.items() if dataset is validation)
    temperature = calibration.fit_temperature(logits[validation_name], validation.labels)
    calibration.apply_temperature(model, temperature)
    return uncalibrated, evaluations(temperature), temperature


def _check_images(labelled: Mapping[str, Dataset]) -> np.ndarray | None:
    """Real digits to check the ONNX copy against Keras on: the first 200 of the first labelled set."""
    return next(iter(labelled.values())).images[:200] if labelled else None


def _history_callback(keras, folder: Path, started: float, rows: list[dict[str, float]] = ()):
    import pandas as pd

    class EpochLog(keras.callbacks.Callback):
        """Records each epoch's figures, learning rate and time, and rewrites history.csv."""

        def __init__(self):
            super().__init__()
            self.rows: list[dict[str, float]] = list(rows)
            self.epoch_started = started

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            row = {"epoch": epoch + 1, **{key: float(value) for key, value in (logs or {}).items()}}
            row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            row["epoch_seconds"] = time.perf_counter() - self.epoch_started
            self.rows.append(row)
            write_text(folder / HISTORY_FILE, pd.DataFrame(self.rows).to_csv(index=False), force=True)

        @property
        def frame(self):
            return pd.DataFrame(self.rows)

    return EpochLog()


# Attributes of Keras's EarlyStopping and ReduceLROnPlateau that a resumed run carries on with.
_CALLBACK_STATE = ("wait", "best", "best_epoch", "cooldown_counter")


def _checkpoint_callback(keras, folder: Path, config: TrainingConfig, history_log, stateful: list,
                         resumed: checkpoints.Checkpoint | None, seconds_before: float):
    class Checkpointing(keras.callbacks.Callback):
        """Writes RUN/checkpoints/last.npz after every epoch, and best.npz when the epoch is the best.

        Put after the callbacks whose state it records (`stateful`: early stopping, plateau), so
        that it sees their state at the end of the epoch and can restore it when a run resumes.
        """

        def __init__(self):
            super().__init__()
            state = resumed.state if resumed is not None else {}
            self.epoch = resumed.epoch if resumed is not None else 0
            self.best_value: float | None = state.get("best_value")
            self.best_epoch: int | None = state.get("best_epoch")
            self.started = time.perf_counter()

        def on_train_begin(self, logs=None):
            if resumed is None:
                return
            for callback, saved in zip(stateful, resumed.state.get("callbacks", [])):
                for name, value in saved.items():
                    setattr(callback, name, value)

        @property
        def training_seconds(self) -> float:
            return seconds_before + time.perf_counter() - self.started

        def on_epoch_end(self, epoch, logs=None):
            self.epoch = epoch + 1
            value = (logs or {}).get(config.checkpoint_monitor)
            better = value is not None and (self.best_value is None or (
                value < self.best_value if "loss" in config.checkpoint_monitor else value > self.best_value
            ))
            if better:
                self.best_value, self.best_epoch = float(value), epoch + 1
            state = {
                "best_value": self.best_value, "best_epoch": self.best_epoch,
                "monitor": config.checkpoint_monitor, "training_seconds": self.training_seconds,
                "callbacks": [{name: _plain(getattr(callback, name)) for name in _CALLBACK_STATE
                               if _plain(getattr(callback, name, None)) is not None} for callback in stateful],
            }
            checkpoint = checkpoints.capture(self.model, epoch + 1, history_log.rows, state)
            if better:
                checkpoints.save(checkpoint, checkpoints.path(folder, "best"))
            checkpoints.save(checkpoint, checkpoints.path(folder, "last"))

    return Checkpointing()


def _plain(value: Any) -> float | int | None:
    """A callback's number as JSON can hold it; None for anything else."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return None


def configure_determinism(config: TrainingConfig) -> None:
    """Seed everything; with `deterministic`, also make TensorFlow's ops and threads repeatable."""
    keras = backend.keras()
    keras.utils.set_random_seed(config.seed)
    if not config.deterministic or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already started; op determinism alone still makes results repeatable


def training_batches(dataset: Dataset, config: TrainingConfig, steps: int, first_epoch: int = 0, one_hot: bool = False):
    """Endless shuffled (and augmented) training batches, starting at epoch `first_epoch` (0-based).

    The stream is `pipeline.batches`, whose shuffles and augmentation are seeded, so it is the
    same in every process; a run resumed at epoch k skips the first k * steps batches and so
    sees exactly the batches an uninterrupted run would (the skipped ones are drawn, not trained on).
    """
    from digitlab.training import pipeline

    data = pipeline.batches(dataset, config.batch_size, config.seed, config.augmentation, one_hot)
    return data.skip(first_epoch * steps).with_options(_data_options())


def _data_options():
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = True
    return options


def known_model(config: TrainingConfig) -> TrainingConfig:
    """`config` with its model named as registered, matched ignoring case ("Tiny-ConvNet" is
    "tiny-convnet"), after loading `model_file`; an unknown model is an error naming the nearest."""
    from digitlab import models

    if config.model_file:
        models.load_user_models(config.model_file)
    known = models.names()
    name = spelled_as_allowed(config.model, known)
    if name not in known:
        raise ConfigError(f"unknown model {config.model!r}; known models: {', '.join(known)}"
                          f"{did_you_mean(config.model, known)}")
    return replace(config, model=name)


def train(
    config: TrainingConfig, offline: bool = False, verbose: int | None = None, callbacks: list | None = None,
    held: Mapping[str, Dataset] | None = None,
) -> Run:
    """Train a model as `config` says and write its run folder; returns the Run.

    `callbacks` are extra Keras callbacks, run after digitlab's own. After every epoch the run
    folder gets a checkpoint (checkpoints/last.npz, and best.npz), so a run that is killed or
    interrupted continues with `resume(run_dir)`.

    `held` gives data in memory, a Dataset by option name ("data", "validation", "test"), in
    place of those options' sources. The run folder keeps each as data/<part>.npz and its
    config.toml names that file, so the run resumes and repeats as one trained from files does.
    """
    held = dict(held or {})
    unknown = sorted(set(held) - set(HELD_PARTS))
    if unknown:
        raise ValueError(f"{unknown[0]!r} cannot be given in memory; only {', '.join(HELD_PARTS)} can")
    # Until the run folder holds them, the options name the data by what it is.
    config = replace(config, **{option: f"{dataset.name} (in memory)" for option, dataset in held.items()})
    config.validate()
    return _train(known_model(config), None, None, offline, verbose, callbacks, held)




def resume(
    run_dir: str | Path, offline: bool = False, verbose: int | None = None, callbacks: list | None = None
) -> Run:
    """Continue a run that stopped (killed, crashed or interrupted) from its last checkpoint.

    The configuration is the run's config.toml; training goes on with the epoch after the last
    checkpoint, appends to the history (every epoch appears once) and finishes the run folder as
    `train` does. A finished run (metrics.json present) or one without a checkpoint is refused.
    """
    folder = Path(run_dir)
    config_path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise DigitlabError(f"{folder}: no such run folder")
    if (folder / METRICS_FILE).exists():
        raise DigitlabError(f"{folder} has finished (metrics.json is there); there is nothing to resume")
    if not config_path.is_file():
        raise DigitlabError(f"{folder} is not a digitlab run folder (no config.toml)")
    last = checkpoints.path(folder)
    if not last.is_file():
        raise DigitlabError(
            f"{folder} has no checkpoint ({last}): it stopped before its first epoch ended; "
            f"start it again with: digitlab train --config {config_path}"
        )
    checkpoints.remove_unfinished(folder)
    config = run_config(folder)
    return _train(config, folder, checkpoints.load(last), offline, verbose, callbacks)


def _float32_copy(model, config: TrainingConfig):
    """The trained model rebuilt in float32: mixed precision speeds training, while predictions,
    ONNX export and serving want plain float32 layers (the weights are float32 already)."""
    from digitlab import models

    with backend.dtype_policy("float32"):
        copy = models.create(config.model, **config.model_options)
    copy.set_weights(model.get_weights())
    return copy


def _calibration_text(validation: Dataset | None, temperature: float | None) -> str:
    """What metrics.json and the report say of the run's calibration."""
    if temperature is not None:
        return f"temperature {temperature:.4f}, fitted on the validation split"
    if validation is None:
        return "none: there is no validation split to fit a temperature on"
    return "none: the model does not end in a Dense layer with softmax"


def _train(
    config: TrainingConfig,
    folder: Path | None,
    resumed: checkpoints.Checkpoint | None,
    offline: bool,
    verbose: int | None,
    callbacks: list | None,
    held: Mapping[str, Dataset] | None = None,
) -> Run:
    from digitlab import models
    from digitlab.inference.export import save_run_model
    from digitlab.training import pipeline, schedules

    keras = backend.keras()
    configure_threads(config.threads)
    configure_determinism(config)
    splits = prepare_data(config, offline=offline, held=held)
    if splits.test_is_validation:
        print(f"note: the validation data is the test data ({splits.validation.name}): "
              f"{TEST_IS_VALIDATION}; it is evaluated once and reported as both", file=sys.stderr, flush=True)
    if config.model_file:
        models.load_user_models(config.model_file)
    one_hot = config.label_smoothing > 0
    steps = config.steps_per_epoch or pipeline.steps_per_epoch(splits.train, config.batch_size)
    # Keras runs whole executions, so an epoch that is not a multiple would overrun it.
    steps = math.ceil(steps / config.steps_per_execution) * config.steps_per_execution
    # built and compiled on every device when distributed
    with strategy_scope(config.distribute), backend.dtype_policy(config.precision):
        model = models.create(config.model, **config.model_options)
        model.compile(
            optimizer=schedules.optimizer(config, steps * config.epochs),
            loss=(keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
                  if one_hot else keras.losses.SparseCategoricalCrossentropy()),
            metrics=["accuracy"],
            steps_per_execution=config.steps_per_execution,
        )
    if splits.validation is None and (config.schedule == "plateau" or config.early_stopping_patience):
        raise ConfigError("the plateau schedule and early stopping need validation data (validation = 0 was given)")
    first_epoch = 0
    if resumed is not None:
        checkpoints.restore(model, resumed, checkpoints.path(folder))
        first_epoch = resumed.epoch
    else:
        folder = new_run_folder(config)
        config = replace(config, **{option: keep_data(folder, HELD_PARTS[option], dataset)
                                    for option, dataset in (held or {}).items()})
    started = time.perf_counter()
    history_log = _history_callback(keras, folder, started, resumed.history if resumed is not None else ())
    extra_callbacks = list(callbacks or [])
    stateful = schedules.epoch_callbacks(config)
    if config.early_stopping_patience:
        stateful.append(keras.callbacks.EarlyStopping(
            monitor=config.early_stopping_monitor, patience=config.early_stopping_patience
        ))
    seconds_before = float(resumed.state.get("training_seconds", 0.0)) if resumed is not None else 0.0
    checkpointing = _checkpoint_callback(keras, folder, config, history_log, stateful, resumed, seconds_before)
    callbacks = [history_log, *stateful, checkpointing]
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(folder / "tensorboard")))
    if resumed is None:
        write_text(folder / CONFIG_FILE, to_toml(config.as_dict() | {"versions": library_versions()}), force=True)

    validation_data = None
    if splits.validation is not None:
        monitored = splits.validation
        if config.validation_monitor is not None and config.validation_monitor < len(monitored):
            monitored = monitored.subset(slice(0, config.validation_monitor))
        validation_data = pipeline.batches(monitored, 1024, config.seed, one_hot=one_hot,
                                           training=False).with_options(_data_options())
    try:
        model.fit(
            training_batches(splits.train, config, steps, first_epoch, one_hot),
            epochs=config.epochs,
            initial_epoch=first_epoch,
            steps_per_epoch=steps,
            validation_data=validation_data,
            callbacks=[*callbacks, *extra_callbacks],
            verbose=(1 if sys.stdout.isatty() else 2) if verbose is None else verbose,
            shuffle=False,  # the training batches are shuffled already
        )
    except KeyboardInterrupt as interrupt:
        interrupt.add_note(INTERRUPTION_EXPLAINED)  # the command line need not say it again
        if checkpointing.epoch:
            print(f"\ninterrupted: {folder} keeps the checkpoint of epoch {checkpointing.epoch}; "
                  f"continue with: digitlab train --resume {folder}", file=sys.stderr)
        else:
            print(f"\ninterrupted before the first epoch ended; {folder} has no checkpoint", file=sys.stderr)
        raise
    training_seconds = checkpointing.training_seconds
    best_epoch = checkpointing.best_epoch if splits.validation is not None and config.keep_best else None
    if best_epoch is not None and best_epoch != checkpointing.epoch:
        best = checkpoints.load(checkpoints.path(folder, "best"))
        for variable, value in zip(model.variables, best.model_variables):
            variable.assign(value)
    if config.precision != "float32":
        model = _float32_copy(model, config)
    labelled = {name: dataset for name, dataset in (("validation", splits.validation), ("test", splits.test))
                if dataset is not None}
    # The checkpoints keep the uncalibrated weights, so a resumed run is calibrated once, here.
    uncalibrated, evaluated, temperature = _evaluate_and_calibrate(model, labelled, splits.validation)

    history = history_log.frame
    metrics: dict[str, Any] = {
        "recipe": config.recipe, "model": config.model, "parameters": int(model.count_params()),
        "epochs_run": len(history), "training_seconds": round(training_seconds, 2),
        "best_epoch": best_epoch, "temperature": None if temperature is None else round(temperature, 6),
        "calibration": _calibration_text(splits.validation, temperature),
    }
    if temperature is not None:
        for name, evaluation in uncalibrated.items():
            metrics[f"{name}_calibration_error_uncalibrated"] = round(evaluation.calibration_error, 6)
    shown_name = report_split(evaluated)
    details = {"recipe": config.recipe, "model": config.model, "data": config.data,
               "evaluated on": str(shown_name), "epochs": str(len(history)),
               "training time": f"{training_seconds:.1f} s",
               "parameters": f"{model.count_params():,}", "calibration": metrics["calibration"]}
    if temperature is not None and shown_name is not None:
        details["before calibration"] = f"calibration error {uncalibrated[shown_name].calibration_error:.2%}"
    if splits.test_is_validation:
        metrics["test_is_validation"] = True
        details["evaluated on"] = f"test, which is the validation data: {TEST_IS_VALIDATION}"
    finish_run(folder, metrics, evaluated, labelled, history, f"digitlab run {folder.name}", details,
               meanwhile=lambda: save_run_model(model, folder, _check_images(labelled)))
    return Run(folder, config, model, history, metrics,
               evaluation=evaluated.get(shown_name), evaluation_data=labelled.get(shown_name))
