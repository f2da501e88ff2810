"""Training ensembles: several runs whose probabilities are averaged (see inference.ensembles)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from digitlab.evaluation.metrics import evaluate
from digitlab.inference.ensembles import (
    AVERAGING,
    DEFAULT_MEMBERS,
    ENSEMBLE_FILENAME,
    ENSEMBLE_FORMAT,
    ENSEMBLE_FORMAT_VERSION,
    MEMBERS_FOLDER,
    VARIATIONS,
    mean_probabilities_function,
)
from digitlab.outputs import write_text
from digitlab.recipes.config import ConfigError, TrainingConfig, apply, to_toml
from digitlab.runs.folder import CONFIG_FILE, finish_run, library_versions, new_run_folder, report_split
from digitlab.runs.run import EnsembleRun, Run, finished_run
from digitlab.training.api import checked_options, resolved_config
from digitlab.training.fit import known_model, prepare_data
from digitlab.training.fit import train as train_config
from digitlab.training.scaleout import train_runs


def _member_models(members: int | None, vary: str, models: Sequence[str] | None) -> tuple[int, list[str] | None]:
    """The number of members and, for vary="models", their architectures; checked."""
    if vary not in VARIATIONS:
        raise ConfigError(f"vary = {vary!r} is not one of {', '.join(VARIATIONS)}")
    if vary == "models":
        if not models:
            raise ConfigError('vary = "models" needs the models, one per member, '
                              'e.g. models=["tiny-convnet", "gap-convnet"]')
        models = [str(name) for name in models]
        if members is not None and members != len(models):
            raise ConfigError(f"{members} members asked for, but {len(models)} models named; give one model per member")
        members = len(models)
    elif models:
        raise ConfigError(f'models are only used with vary = "models" (vary = {vary!r} was given)')
    elif members is None:
        members = DEFAULT_MEMBERS
    if isinstance(members, bool) or not isinstance(members, int) or members < 2:
        raise ConfigError(f"an ensemble needs a whole number of at least 2 members, got {members!r}")
    return members, (list(models) if vary == "models" else None)


def _member_configs(base: TrainingConfig, count: int, vary: str, models: list[str] | None) -> list[TrainingConfig]:
    """Each member's config: its own seed; a bootstrap sample or its own model if `vary` says so.

    Every member keeps the base's split seed, so all share one validation split.
    """

    split_seed = base.seed if base.split_seed is None else base.split_seed
    configs = []
    for index in range(count):
        settings: dict[str, Any] = {"seed": base.seed + index, "split_seed": split_seed}
        if vary == "bagging":
            settings["bootstrap"] = True
        if models is not None:
            settings["model"] = models[index]
        config = apply(base, settings, f"ensemble member {index + 1}")
        config.validate()
        configs.append(config)
    return configs




def _member_text(config: TrainingConfig) -> str:
    return f"{config.model}, seed {config.seed}{', bootstrap sample' if config.bootstrap else ''}"


def _train_on_ray(configs: list[TrainingConfig], offline: bool, address: str | None, verbose: int | None) -> list[Run]:
    """The members trained as Ray tasks, in parallel, and read back from their run folders."""

    if verbose != 0:
        print(f"training {len(configs)} members as Ray tasks on {address or 'a local Ray'}", flush=True)

    def report(index: int, folder: Path) -> None:
        if verbose != 0:
            print(f"ensemble member {index + 1}/{len(configs)} finished: {_member_text(configs[index])}", flush=True)

    folders = train_runs(configs, offline, address, on_finished=report)
    # The workers answer with absolute paths; the members' runs_dir is as the caller gave it.
    return [finished_run(Path(config.runs_dir) / folder.name) for config, folder in zip(configs, folders)]


def train_ensemble(
    members: int | None = None,
    recipe: str | Path | None = None,
    data: str | Path | None = None,
    vary: str = "seed",
    models: Sequence[str] | None = None,
    runs_dir: str | Path | None = None,
    *,
    config_file: str | Path | None = None,
    offline: bool = False,
    verbose: int | None = None,
    ray: bool = False,
    ray_address: str | None = None,
    **overrides: Any,
) -> EnsembleRun:
    """Train an ensemble of `members` models (default 3) and write its folder; returns the EnsembleRun.

    The members are trained one after the other as `digitlab.train(recipe, data,
    config_file=..., **overrides)` would train one model, except that member i (from 0) has
    seed `seed + i` and, by `vary`:

        "seed"     nothing else: the members differ by initial weights and batch order
        "bagging"  each trains on its own bootstrap sample of the training split
                   (TrainingConfig.bootstrap: same size, drawn with replacement)
        "models"   each is one architecture of `models` (then `members` may be left out)

    All members share one validation split (TrainingConfig.split_seed = `seed`), which each
    uses to keep its best epoch; the ensemble's probabilities are the mean of the members'.
    The test data is only reported on. The folder, runs/<time>-ensemble-<recipe>/ (under
    `runs_dir`), holds ensemble.json, config.toml, metrics.json, the report and pictures of the
    ensemble, and members/<run>/ for each member; `digitlab.load_model(folder)` loads it.

    With `ray` (or a `ray_address`), the members train in parallel as Ray tasks, one CPU each,
    on a local Ray started for the purpose or on the cluster at `ray_address`; the folder is
    the same. Ray is the optional extra `digitlab[ray]`.

    A bad option raises `digitlab.recipes.config.ConfigError` before anything is trained.

    >>> ensemble = train_ensemble(3, "tiny-convnet", vary="bagging", epochs=5)
    >>> ensemble.metrics["test_accuracy"], ensemble.metrics["member_test_accuracy"]
    >>> digitlab.load_model(ensemble.path).predict(images)
    """
    # TensorFlow starts with this (and with the models): not before a bad option has been reported
    from digitlab.inference.model_files import input_adapter

    count, member_models = _member_models(members, vary, models)
    if data is not None:
        overrides = {"data": data, **overrides}
    if runs_dir is not None:
        overrides = {**overrides, "runs_dir": runs_dir}
    if member_models is not None and "model" in overrides:
        raise ConfigError('give either model or, with vary = "models", models; not both')
    base = resolved_config(recipe, config_file, checked_options(overrides), verbose)
    # an unknown model fails now, before any training
    configs = [known_model(config) for config in _member_configs(base, count, vary, member_models)]

    if ray or ray_address:
        from digitlab.compute.cluster import import_ray

        import_ray()  # a missing extra is reported before anything is written
    folder = new_run_folder(dataclasses.replace(base, recipe=f"ensemble-{base.recipe}"))
    members_folder = folder / MEMBERS_FOLDER
    configs = [dataclasses.replace(config, runs_dir=str(members_folder)) for config in configs]
    ensemble_settings = {"members": count, "vary": vary, "averaging": AVERAGING,
                         "seeds": [config.seed for config in configs],
                         "models": [config.model for config in configs]}
    write_text(folder / CONFIG_FILE, to_toml(base.as_dict() | {"ensemble": ensemble_settings,
                                                                 "versions": library_versions()}), force=True)
    started = time.perf_counter()
    if ray or ray_address:
        runs = _train_on_ray(configs, offline, ray_address, verbose)
    else:
        runs = []
        for number, config in enumerate(configs, start=1):
            if verbose != 0:
                print(f"ensemble member {number}/{count}: {_member_text(config)}", flush=True)
            runs.append(train_config(config, offline=offline, verbose=verbose))
    training_seconds = time.perf_counter() - started

    # The members' validation split and test data: the same for all (one split seed).
    splits = prepare_data(dataclasses.replace(configs[0], bootstrap=False), offline=offline)
    predict = mean_probabilities_function([input_adapter(run.model) for run in runs])
    evaluated = {name: evaluate(predict, dataset)
                 for name, dataset in (("validation", splits.validation), ("test", splits.test))
                 if dataset is not None}
    member_entries = [
        {"path": run.path.relative_to(folder).as_posix(), "model": run.config.model, "seed": run.config.seed,
         "bootstrap": run.config.bootstrap, "parameters": int(run.model.count_params()),
         "temperature": run.metrics.get("temperature"),
         "validation_accuracy": run.metrics.get("validation_accuracy"),
         "test_accuracy": run.metrics.get("test_accuracy")}
        for run in runs
    ]
    metrics: dict[str, Any] = {
        "recipe": base.recipe, "vary": vary, "members": count, "averaging": AVERAGING,
        "models": [run.config.model for run in runs],
        "parameters": sum(entry["parameters"] for entry in member_entries),
        "training_seconds": round(training_seconds, 2),
    }
    for name in evaluated:
        metrics[f"member_{name}_accuracy"] = [entry[f"{name}_accuracy"] for entry in member_entries]
    datasets = {"validation": splits.validation, "test": splits.test}
    shown_name = report_split(evaluated)
    member_figures = "" if shown_name is None else ", ".join(
        f"{entry[f'{shown_name}_accuracy']:.2%}" for entry in member_entries
        if entry[f"{shown_name}_accuracy"] is not None
    )
    finish_run(
        folder, metrics, evaluated, datasets, None, f"digitlab ensemble {folder.name}",
        details={"recipe": base.recipe, "members": f"{count}, differing by {vary}",
                 "models": ", ".join(metrics["models"]), "averaging": AVERAGING, "data": base.data,
                 "evaluated on": str(shown_name), f"members' {shown_name} accuracy": member_figures,
                 "training time": f"{training_seconds:.1f} s", "parameters": f"{metrics['parameters']:,}"},
    )
    # Written last: an ensemble folder without ensemble.json is an unfinished one.
    description = {
        "format": ENSEMBLE_FORMAT, "version": ENSEMBLE_FORMAT_VERSION, "averaging": AVERAGING,
        "recipe": base.recipe, "vary": vary, "members": member_entries,
        **{f"{name}_accuracy": metrics[f"{name}_accuracy"] for name in evaluated},
    }
    write_text(folder / ENSEMBLE_FILENAME, json.dumps(description, indent=2) + "\n", force=True)
    return EnsembleRun(folder, base, vary, runs, metrics, evaluation=evaluated.get(shown_name),
                       evaluation_data=datasets.get(shown_name))
