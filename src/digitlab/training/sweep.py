"""Hyperparameter sweeps: many trainings of one recipe with some options varied, the best kept.

A sweep file is TOML:

    recipe = "tiny-convnet"          # the base: a recipe name or .toml file (default fast)
    method = "random"                # "grid" (every combination; the default when all are lists)
    samples = 8                      # random only: how many trials
    seed = 0                         # random only: the draw of the trials
    metric = "val_accuracy"          # or "val_loss"; never a test figure

    [fixed]                          # options every trial shares, over the recipe
    epochs = 5
    data = "mnist"

    [search]                         # options that vary: a list of values or a range
    learning_rate = {min = 1e-4, max = 1e-2, log = true}
    batch_size = [32, 64, 128]
    augmentation = {rotation = [0, 10]}   # augmentation and model_options take tables

    [asha]                           # with --ray: early stopping of bad trials
    grace_period = 1                 # epochs every trial runs before it can be stopped
    reduction_factor = 2             # each rung keeps about 1 / reduction_factor of the trials

A range is drawn uniformly (log-uniformly with `log = true`), as whole numbers when both ends
are. The trials are drawn here, so a sweep gives the same trials on Ray as without it.

`run_sweep` trains the trials one after the other, or with Ray as Ray Tune trials, in
parallel, where Tune's ASHA scheduler stops trials that fall behind at each rung. Either way
it writes runs/<time>-sweep-<recipe>/ with results.csv (one row per trial), trials.png (the
metric per epoch of each trial), best.toml (the best trial's options, for `digitlab train
--config best.toml`) and trials/ with each trial's run folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.compute import backend
from digitlab.compute.cluster import connected
from digitlab.compute.devices import configure_threads
from digitlab.errors import DigitlabError
from digitlab.outputs import write_text
from digitlab.recipes.config import DEFAULT_RECIPE, ConfigError, TrainingConfig, apply, read_toml, resolve, to_toml
from digitlab.runs.folder import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, new_run_folder
from digitlab.training.api import TRAINING_OPTIONS
from digitlab.training.fit import train
from digitlab.training.scaleout import portable_config

__all__ = ["Range", "Sweep", "SweepResult", "read_sweep", "run_sweep"]

METRIC_MODES = {"val_accuracy": "max", "val_loss": "min"}
METHODS = ("grid", "random")
SWEEP_KEYS = ("recipe", "method", "samples", "seed", "metric", "fixed", "search", "asha")
ASHA_KEYS = ("grace_period", "reduction_factor")
NESTED_OPTIONS = ("augmentation", "model_options")
DEFAULT_SAMPLES = 10
TRIALS_FOLDER = "trials"


@dataclass(frozen=True)
class Range:
    """Values between `minimum` and `maximum`, drawn uniformly or, with `log`, log-uniformly."""

    minimum: float
    maximum: float
    log: bool = False

    @property
    def whole_numbers(self) -> bool:
        return isinstance(self.minimum, int) and isinstance(self.maximum, int)

    def draw(self, generator: np.random.Generator) -> float | int:
        if self.log:
            value = math.exp(generator.uniform(math.log(self.minimum), math.log(self.maximum)))
        else:
            value = generator.uniform(self.minimum, self.maximum)
        if self.whole_numbers:
            return int(min(max(round(value), self.minimum), self.maximum))
        return float(f"{value:.6g}")  # readable in the results table and best.toml


@dataclass
class Sweep:
    """A sweep file, read and checked: the base config and what each trial varies."""

    path: Path
    base: TrainingConfig
    search: dict[str, list[Any] | Range]  # option -> values; nested options as "augmentation.rotation"
    method: str = "grid"
    samples: int = DEFAULT_SAMPLES
    seed: int = 0
    metric: str = "val_accuracy"
    grace_period: int = 1
    reduction_factor: int = 2

    @property
    def mode(self) -> str:
        return METRIC_MODES[self.metric]

    def trial_settings(self) -> list[dict[str, Any]]:
        """Each trial's searched values, by option name: every combination, or `samples` draws."""
        names = list(self.search)
        if self.method == "grid":
            return [dict(zip(names, values)) for values in itertools.product(*self.search.values())]
        generator = np.random.default_rng(self.seed)
        trials = []
        for _ in range(self.samples):
            trial = {}
            for name, values in self.search.items():
                if isinstance(values, Range):
                    trial[name] = values.draw(generator)
                else:
                    trial[name] = values[int(generator.integers(len(values)))]
            trials.append(trial)
        return trials

    def trial_config(self, settings: dict[str, Any], runs_dir: str | Path, number: int) -> TrainingConfig:
        """The base config with a trial's `settings` laid over it, checked."""
        origin = f"{self.path}: trial {number} ({_settings_text(settings)})"
        config = apply(self.base, _nested(settings), origin)
        try:
            config.validate()
        except ConfigError as error:
            raise ConfigError(f"{origin}: {error}") from None
        return dataclasses.replace(config, runs_dir=str(runs_dir))


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{name} = {value!r}" for name, value in settings.items())


def _nested(settings: dict[str, Any]) -> dict[str, Any]:
    """{"augmentation.rotation": 10} -> {"augmentation": {"rotation": 10}}, as configs take them."""
    nested: dict[str, Any] = {}
    for name, value in settings.items():
        table, _, key = name.partition(".")
        if key:
            nested.setdefault(table, {})[key] = value
        else:
            nested[name] = value
    return nested


# --- reading a sweep file ------------------------------------------------------------------


def _unknown(path: Path, where: str, name: str, known: tuple[str, ...]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{path}: {where}unknown key {name!r}{hint}; known: {', '.join(known)}")


def _whole_number(path: Path, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{path}: {name} must be a whole number of at least {minimum}, got {value!r}")
    return value


def _search_values(path: Path, name: str, value: Any) -> list[Any] | Range:
    where = f"{path}: [search] {name}"
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: the list of values is empty")
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a list of values or a range {{min = ..., max = ...}}, got {value!r}")
    unknown = sorted(set(value) - {"min", "max", "log"})
    if unknown:
        raise ConfigError(f"{where}: unknown range key {unknown[0]!r}; a range has min, max and log")
    if "min" not in value or "max" not in value:
        raise ConfigError(f"{where}: a range needs both min and max")
    minimum, maximum, log = value["min"], value["max"], value.get("log", False)
    for bound in (minimum, maximum):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise ConfigError(f"{where}: min and max must be numbers, got {bound!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if minimum >= maximum:
        raise ConfigError(f"{where}: min ({minimum}) must be below max ({maximum})")
    if log and minimum <= 0:
        raise ConfigError(f"{where}: a log range needs min above 0, got {minimum}")
    return Range(minimum, maximum, log)


def _search(path: Path, table: Any) -> dict[str, list[Any] | Range]:

    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{path}: [search] is missing or empty; name at least one option to vary, "
                          "e.g. learning_rate = [0.001, 0.01]")
    search: dict[str, list[Any] | Range] = {}
    for name, value in table.items():
        if name not in TRAINING_OPTIONS:
            raise _unknown(path, "[search] ", name, TRAINING_OPTIONS)
        if name in NESTED_OPTIONS:
            if not isinstance(value, dict) or not value:
                raise ConfigError(f"{path}: [search] {name} must be a table of its keys, "
                                  f"e.g. {name} = {{rotation = [0, 10]}}")
            for key, inner in value.items():
                search[f"{name}.{key}"] = _search_values(path, f"{name}.{key}", inner)
        else:
            search[name] = _search_values(path, name, value)
    return search


def read_sweep(path: str | Path, runs_dir: str | None = None) -> Sweep:
    """Read and check a sweep file; every mistake is a `ConfigError` naming the file and key.

    Every trial's config is checked too, so a bad value fails before any training.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give the sweep's .toml file")
    content = read_toml(path)
    for name in content:
        if name not in SWEEP_KEYS:
            raise _unknown(path, "", name, SWEEP_KEYS)
    recipe = content.get("recipe", DEFAULT_RECIPE)
    if not isinstance(recipe, str):
        raise ConfigError(f"{path}: recipe must be a recipe name or .toml file, got {recipe!r}")
    fixed = content.get("fixed", {})
    if not isinstance(fixed, dict):
        raise ConfigError(f"{path}: fixed must be a table of options, [fixed]")
    search = _search(path, content.get("search"))
    for name in search:
        table, _, key = name.partition(".")
        fixed_value = fixed.get(table)
        if fixed_value is not None and (not key or (isinstance(fixed_value, dict) and key in fixed_value)):
            raise ConfigError(f"{path}: {name} is both in [fixed] and in [search]; keep it in one")

    metric = content.get("metric", "val_accuracy")
    if metric not in METRIC_MODES:
        test_hint = " (the test data is only reported on, never used to choose)" if "test" in str(metric) else ""
        raise ConfigError(f"{path}: metric = {metric!r} is not one of {', '.join(METRIC_MODES)}{test_hint}")
    has_ranges = any(isinstance(values, Range) for values in search.values())
    method = content.get("method", "random" if has_ranges else "grid")
    if method not in METHODS:
        raise ConfigError(f"{path}: method = {method!r} is not one of {', '.join(METHODS)}")
    if method == "grid":
        ranged = next((name for name, values in search.items() if isinstance(values, Range)), None)
        if ranged is not None:
            raise ConfigError(f'{path}: [search] {ranged}: a grid needs a list of values; '
                              'a range {min, max} needs method = "random"')
        for name in ("samples", "seed"):
            if name in content:
                raise ConfigError(f'{path}: {name} is for method = "random"; a grid runs every combination once')
    samples = _whole_number(path, "samples", content.get("samples", DEFAULT_SAMPLES), 1)
    seed = _whole_number(path, "seed", content.get("seed", 0), 0)
    asha = content.get("asha", {})
    if not isinstance(asha, dict):
        raise ConfigError(f"{path}: asha must be a table, [asha]")
    for name in asha:
        if name not in ASHA_KEYS:
            raise _unknown(path, "[asha] ", name, ASHA_KEYS)
    grace_period = _whole_number(path, "[asha] grace_period", asha.get("grace_period", 1), 1)
    reduction_factor = _whole_number(path, "[asha] reduction_factor", asha.get("reduction_factor", 2), 2)

    overrides = {} if runs_dir is None else {"runs_dir": runs_dir}
    try:
        base = resolve(recipe=recipe, overrides=None)
        base = apply(base, fixed, f"{path} [fixed]")
        base = apply(base, overrides, "option")
        base.validate()
    except ConfigError as error:
        message = str(error)
        raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    if base.validation == 0:
        raise ConfigError(f"{path}: a sweep chooses by {metric} and needs validation data (validation = 0 was given)")
    sweep = Sweep(path, base, search, method, samples, seed, metric, grace_period, reduction_factor)
    for number, settings in enumerate(sweep.trial_settings(), start=1):
        sweep.trial_config(settings, base.runs_dir, number)
    return sweep


# --- running a sweep -----------------------------------------------------------------------


@dataclass
class SweepResult:
    """A finished sweep: its folder, the results table (a DataFrame, one row per trial) and the best trial."""

    path: Path
    sweep: Sweep
    table: Any  # pandas.DataFrame
    best_trial: int
    best_config: TrainingConfig
    training_seconds: float = 0.0
    trial_folders: list[Path | None] = field(default_factory=list, repr=False)

    @property
    def best_value(self) -> float:
        return float(self.table.loc[self.table["trial"] == self.best_trial, self.sweep.metric].iloc[0])


def _trial_folder(trials_dir: Path) -> Path | None:
    """The run folder a trial made inside its own runs_dir, if it got that far."""
    folders = sorted(folder for folder in trials_dir.glob("*") if (folder / CONFIG_FILE).is_file())
    return folders[-1] if folders else None


def _trial_row(number: int, settings: dict[str, Any], config: TrainingConfig, folder: Path | None,
               metric: str, mode: str, sweep_folder: Path, failure: str | None) -> tuple[dict[str, Any], Any]:
    """A results-table row from the trial's run folder, and its history (None if it has none).

    The trial's figure is its best epoch's `metric`, from history.csv, which is written after
    every epoch, so a trial stopped early by ASHA is measured on the epochs it ran.
    """
    import pandas as pd

    history = None
    if folder is not None and (folder / HISTORY_FILE).is_file():
        history = pd.read_csv(folder / HISTORY_FILE)
    row: dict[str, Any] = {"trial": number, **settings}
    if history is None or metric not in history or history[metric].isna().all():
        row.update({"status": "failed" if failure else "not started", metric: float("nan"), "best_epoch": None,
                    "epochs_run": 0})
    else:
        values = history[metric].to_numpy(dtype=np.float64)
        best = int(np.nanargmax(values) if mode == "max" else np.nanargmin(values))
        finished = (folder / METRICS_FILE).is_file()
        row.update({"status": "finished" if finished else ("failed" if failure else "stopped early"),
                    metric: round(float(values[best]), 6), "best_epoch": int(history["epoch"].iloc[best]),
                    "epochs_run": len(history)})
    row["epochs"] = config.epochs
    row["run"] = "" if folder is None else folder.relative_to(sweep_folder).as_posix()
    row["error"] = failure or ""
    return row, history


def _train_locally(configs: list[TrainingConfig], settings: list[dict[str, Any]], offline: bool,
                   verbose: int | None) -> dict[int, str]:
    """Train the trials one after the other; a failing trial is recorded, the others still run."""

    failures = {}
    for number, (config, trial) in enumerate(zip(configs, settings), start=1):
        if verbose != 0:
            print(f"trial {number}/{len(configs)}: {_settings_text(trial)}", flush=True)
        try:
            train(config, offline=offline, verbose=verbose)
        except DigitlabError as error:
            failures[number] = str(error)
            print(f"trial {number} failed: {error}", flush=True)
    return failures


def _tune_trial(parameters: dict[str, Any], configs: list[TrainingConfig], offline: bool, metric: str) -> None:
    """One Ray Tune trial: train its config, reporting `metric` after every epoch to the scheduler.

    The last epoch is reported only once the run folder is complete: the scheduler may end a
    trial at any report, and one that has run all its epochs should keep its model and report.
    """
    from ray import tune


    config = configs[parameters["trial"]]
    configure_threads(config.threads)  # before TensorFlow starts, or it is too late
    keras = backend.keras()

    class ReportToTune(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(metric)
            if value is not None and epoch + 1 < config.epochs:
                tune.report({metric: float(value), "epoch": epoch + 1})

    run = train(config, offline=offline, verbose=0, callbacks=[ReportToTune()])
    last = run.history.iloc[-1]
    if int(last["epoch"]) == config.epochs and metric in last:
        tune.report({metric: float(last[metric]), "epoch": config.epochs})


class _TrialProgress:
    """Prints a line as each Tune trial ends (made a `ray.tune.Callback` when Ray is there)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.ended = 0

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.ended += 1
        epochs = trial.last_result.get("epoch", 0)
        print(f"trial {int(trial.config['trial']) + 1} ended after {epochs} epochs "
              f"({self.ended}/{self.total})", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.ended += 1
        print(f"trial {int(trial.config['trial']) + 1} failed ({self.ended}/{self.total})", flush=True)


def _train_on_ray(sweep: Sweep, configs: list[TrainingConfig], folder: Path, offline: bool, address: str | None,
                  cpus_per_trial: int, verbose: int | None) -> dict[int, str]:
    """Run the trials as Ray Tune trials under ASHA; the failures, by trial number."""

    with connected(address):
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler

        portable = [portable_config(config, cpus_per_trial) for config in configs]
        trainable = tune.with_resources(
            tune.with_parameters(_tune_trial, configs=portable, offline=offline, metric=sweep.metric),
            {"cpu": cpus_per_trial},
        )
        scheduler = ASHAScheduler(time_attr="training_iteration", metric=sweep.metric, mode=sweep.mode,
                                  max_t=max(config.epochs for config in configs),
                                  grace_period=sweep.grace_period, reduction_factor=sweep.reduction_factor)
        if verbose != 0:
            print(f"running {len(configs)} trials as Ray Tune trials on {address or 'a local Ray'} "
                  f"(ASHA: grace period {sweep.grace_period}, reduction factor {sweep.reduction_factor})", flush=True)
        progress = type("TrialProgress", (_TrialProgress, tune.Callback), {})(len(configs))
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(list(range(len(configs))))},
            tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=1, reuse_actors=True),
            run_config=tune.RunConfig(name="tune", storage_path=str((folder / "tune").resolve()), verbose=0,
                                      callbacks=[] if verbose == 0 else [progress]),
        )
        results = tuner.fit()
        failures = {}
        for result in results:
            if result.error is not None:
                number = int(result.config["trial"]) + 1
                failures[number] = str(getattr(result.error, "cause", None) or result.error).strip().splitlines()[-1]
    return failures


def run_sweep(
    path: str | Path,
    runs_dir: str | None = None,
    *,
    ray: bool = False,
    ray_address: str | None = None,
    cpus_per_trial: int = 1,
    offline: bool = False,
    verbose: int | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run the sweep file at `path` and write its folder; returns the SweepResult.

    Without `ray` the trials train one after the other, each to its last epoch. With `ray` (or
    a `ray_address`) they are Ray Tune trials of `cpus_per_trial` CPUs each, in parallel, and
    Tune's ASHA scheduler stops the trials that fall behind on the sweep's metric. The best
    trial is the one with the best metric on the validation split; the test data is not used.
    """
    import pandas as pd

    from digitlab.data import pictures
    from digitlab.evaluation import figures

    sweep = read_sweep(path, runs_dir)
    if ray or ray_address:
        from digitlab.compute.cluster import import_ray

        import_ray()  # a missing extra is reported before anything is written
    _whole_number(sweep.path, "cpus_per_trial", cpus_per_trial, 1)
    settings = sweep.trial_settings()
    folder = new_run_folder(dataclasses.replace(sweep.base, recipe=f"sweep-{sweep.base.recipe}"))
    trial_dirs = [folder / TRIALS_FOLDER / f"trial-{number:02d}" for number in range(1, len(settings) + 1)]
    configs = [sweep.trial_config(trial, trial_dir, number)
               for number, (trial, trial_dir) in enumerate(zip(settings, trial_dirs), start=1)]
    write_text(folder / "sweep.toml", sweep.path.read_text(encoding="utf-8"), force=True)

    started = time.perf_counter()
    if ray or ray_address:
        failures = _train_on_ray(sweep, configs, folder, offline, ray_address, cpus_per_trial, verbose)
    else:
        failures = _train_locally(configs, settings, offline, verbose)
    seconds = time.perf_counter() - started

    rows, histories, folders = [], {}, []
    for number, (trial, config, trial_dir) in enumerate(zip(settings, configs, trial_dirs), start=1):
        trial_folder = _trial_folder(trial_dir)
        row, history = _trial_row(number, trial, config, trial_folder, sweep.metric, sweep.mode, folder,
                                  failures.get(number))
        rows.append(row)
        folders.append(trial_folder)
        if history is not None:
            histories[f"trial {number}"] = history
        if on_trial is not None:
            on_trial(row)
    table = pd.DataFrame(rows)
    write_text(folder / "results.csv", table.to_csv(index=False), force=True)
    measured = table[table[sweep.metric].notna()]
    if measured.empty:

        first = next(iter(failures.values()), "no trial finished an epoch")
        raise DigitlabError(f"every trial of {sweep.path} failed ({first}); see {folder / 'results.csv'}")
    best_index = measured[sweep.metric].idxmax() if sweep.mode == "max" else measured[sweep.metric].idxmin()
    best_trial = int(table.loc[best_index, "trial"])
    pictures.save(figures.sweep_curves(histories, sweep.metric, f"trial {best_trial}"), folder / "trials.png",
                  force=True)

    best_config = dataclasses.replace(configs[best_trial - 1], runs_dir=sweep.base.runs_dir)
    header = (f"# the best trial ({best_trial} of {len(configs)}) of the sweep {sweep.path}: "
              f"{sweep.metric} {table.loc[best_index, sweep.metric]}\n"
              f"# train it with: digitlab train --config best.toml\n")
    write_text(folder / "best.toml", header + to_toml(best_config.as_dict()), force=True)
    return SweepResult(folder, sweep, table, best_trial, best_config, seconds, folders)
