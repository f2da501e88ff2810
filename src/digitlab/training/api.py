"""Training from Python: `digitlab.train`, the function the `digitlab train` command calls too.

`digitlab.train` is this module's `train`; the training machinery itself is in
`digitlab.training.fit` (its `train` takes a resolved `TrainingConfig`).
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digitlab.data.arrays import as_dataset
from digitlab.data.dataset import Dataset
from digitlab.errors import DigitlabError
from digitlab.recipes.config import DEFAULT_RECIPE, Augmentation, ConfigError, TrainingConfig, resolve
from digitlab.runs.run import Run
from digitlab.training.fit import HELD_PARTS, known_model
from digitlab.training.fit import resume as resume_run
from digitlab.training.fit import train as train_config

if TYPE_CHECKING:
    import pandas

__all__ = ["DEFAULT_RECIPE", "TRAINING_OPTIONS", "train"]

TRAINING_OPTIONS = tuple(option.name for option in dataclasses.fields(TrainingConfig))


def checked_options(overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides as config values; an unknown name is an error suggesting the nearest one."""
    options = {}
    for name, value in overrides.items():
        if name not in TRAINING_OPTIONS:
            close = difflib.get_close_matches(name, TRAINING_OPTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"digitlab.train got an unknown option {name!r}{hint}; "
                f"options are: {', '.join(TRAINING_OPTIONS)}"
            )
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, Augmentation):
            value = dataclasses.asdict(value)
        options[name] = value
    return options


def is_held(value: Any) -> bool:
    """Whether an option's value is data in memory rather than a source or a number."""
    return value is not None and not isinstance(value, (str, Path, int, float, np.number))


def held_data(overrides: dict[str, Any]) -> dict[str, Dataset]:
    """The source options given as data in memory, as Datasets by option name: a Dataset, a pair
    (images, labels) of arrays or a DataFrame in Kaggle's layout, each with labels."""
    held = {}
    for name in HELD_PARTS:
        if is_held(overrides.get(name)):
            dataset = as_dataset(overrides[name], name)
            if not dataset.is_labelled:
                raise ConfigError(f"{name} has no labels: give (images, labels), a labelled Dataset or a "
                                  "DataFrame with a label column")
            held[name] = dataset
    return held


def resolved_config(
    recipe: str | Path | None, config_file: str | Path | None, options: dict[str, Any], verbose: int | None = None
) -> TrainingConfig:
    """The settings to train with: the defaults, `recipe`, `config_file`, then `options`.

    With neither a recipe nor a config file the recipe is DEFAULT_RECIPE, unless `options` name
    a model: that model then trains with the defaults of TrainingConfig (Adam at 0.001, a constant
    rate, no label smoothing), not another recipe's, in a run named after it, and a note (unless
    `verbose` is 0) says which settings those are.
    """
    model_alone = recipe is None and config_file is None and "model" in options
    if recipe is None and config_file is None and not model_alone:
        recipe = DEFAULT_RECIPE
    config = resolve(recipe=None if recipe is None else str(recipe),
                     config_file=None if config_file is None else Path(config_file),
                     overrides=options)
    if not model_alone:
        return config
    config = known_model(config)
    config = dataclasses.replace(config, recipe=config.model)
    if verbose != 0:
        smoothing = f"label smoothing {config.label_smoothing:g}" if config.label_smoothing else "no label smoothing"
        print(f"note: no recipe given, so {config.model} trains with the default settings ({config.optimizer} at "
              f"{config.learning_rate:g}, {config.schedule} schedule, {smoothing}, {config.epochs} "
              f"epoch{'' if config.epochs == 1 else 's'}, batches of {config.batch_size}) in a run named after it; "
              f"a recipe (such as {DEFAULT_RECIPE}) brings its own", file=sys.stderr, flush=True)
    return config


def train(
    recipe: str | Path | None = None,
    data: str | Path | Dataset | tuple | pandas.DataFrame | None = None,
    *,
    config_file: str | Path | None = None,
    offline: bool = False,
    verbose: int | None = None,
    resume: str | Path | None = None,
    **overrides: Any,
) -> Run:
    """Train a digit recogniser and write its run folder, as `digitlab train` does; returns the Run.

    Settings are laid over each other in this order, later ones winning: the defaults, the
    recipe, `config_file` (a TOML file of options), then `data` and the keyword overrides.
    Without a recipe or config file the recipe is "fast" (99% in seconds), as on the command line;
    a `model` given without either trains with the defaults of TrainingConfig (Adam at 0.001, a
    constant rate, no label smoothing; not fast's settings) in a run named after the model.

    recipe       a shipped recipe: "fast", "keras-example", "tiny-convnet", "three-conv-batchnorm",
                 "four-conv-augmented", ... (digitlab.recipes.config.recipe_names()), or a .toml file
    data         the training source: "mnist" (the default), an IDX or Kaggle CSV file or
                 folder, a Keras-style .npz or an image folder; its test part, if it has one,
                 is only reported on, never used to choose. Or data in memory: a pair
                 (images, labels) of arrays (see `Dataset.from_arrays` for their forms), a
                 DataFrame in Kaggle's layout or a Dataset, which the run folder keeps as
                 data/train.npz and config.toml names; it has no test part
    config_file  a TOML file of options
    offline      never download MNIST
    verbose      Keras's 0 (silent), 1 (progress bar) or 2 (a line per epoch); by default a
                 progress bar in a terminal and a line per epoch elsewhere
    resume       a run folder that stopped (killed, crashed, Ctrl-C): continue it from its last
                 checkpoint with its own config.toml (no recipe, data or options may be given);
                 a finished run is refused

    Any option of `digitlab.recipes.config.TrainingConfig` can be given by keyword; the main ones:

        model            a name from digitlab.models.names(), e.g. "gap-convnet"
        epochs           passes over the training data; steps_per_epoch sets batches per epoch
        batch_size       images per batch
        optimizer        "adam", "adamw", "rmsprop" or "sgd", with learning_rate
        schedule         "constant", "exponential" (decay_rate), "plateau", "cosine", "one-cycle"
        augmentation     a dict of rotation (degrees), zoom, width_shift, height_shift (fractions),
                         and other writers' and captures' changes, each on a `probability` share
                         of the images: stroke_width, stretch, slant, elastic, low_resolution,
                         binarise, blur, faint (see digitlab.recipes.config.Augmentation)
        validation       a fraction (0.1), a count (5000) or a source of its own, which may
                         be in memory as `data` may (and `test` too)
        train_limit      train on a stratified subset of this many images
        deterministic    bit-identical results for the same seed and data (somewhat slower)
        label_smoothing, early_stopping_patience, keep_best, seed, threads, runs_dir

    Every epoch ends with a checkpoint in RUN/checkpoints/, so `digitlab.train(resume=RUN)`
    (`digitlab train --resume RUN` on the command line) continues an interrupted run.

    A misspelt option, a wrong type or a bad value raises `digitlab.recipes.config.ConfigError`
    naming it. The run folder (runs/<time>-<recipe>/ unless runs_dir says otherwise) holds
    model.keras, history.csv, metrics.json, the pictures and report.html.

    Example:

        >>> import digitlab
        >>> run = digitlab.train("keras-example", epochs=3, train_limit=10_000,
        ...                      augmentation={"rotation": 10, "zoom": 0.1})
        >>> run.metrics["test_accuracy"]
        >>> run.plot_curves()                    # a matplotlib Figure, inline in notebooks
        >>> run.predict(digitlab.load("mnist:test").images[:10])
        >>> run.submit("test.csv", "submission.csv")
    """
    if resume is not None:
        given = [name for name, value in (("recipe", recipe), ("data", data), ("config_file", config_file))
                 if value is not None] + [name for name, value in overrides.items() if value is not None]
        if given:
            raise DigitlabError(
                f"a resumed run uses its own config.toml; {', '.join(given)} cannot be given with resume"
            )
        return resume_run(resume, offline=offline, verbose=verbose)
    if data is not None:
        overrides = {"data": data, **overrides}
    held = held_data(overrides)
    options = checked_options({name: value for name, value in overrides.items() if name not in held})
    config = resolved_config(recipe, config_file, options, verbose)
    return train_config(config, offline=offline, verbose=verbose, held=held)
