"""Training runs as Ray tasks (see compute.cluster for connecting).

Paths in a training config are made absolute before they travel, because Ray workers (and Tune
trials) do not run in the caller's folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from digitlab.compute.cluster import connected
from digitlab.errors import DigitlabError
from digitlab.recipes.config import TrainingConfig


def _absolute_source(source: str | None) -> str | None:
    """A data source with its file part made absolute; names such as "mnist" stay as they are."""
    from digitlab.data.sources import split_part

    if source is None:
        return None
    text, part = split_part(source)
    path = Path(text).expanduser()
    if not path.exists():
        return source
    return str(path.resolve()) + ("" if part is None else f":{part}")


def portable_config(config: TrainingConfig, threads: int | None = None) -> TrainingConfig:
    """`config` with absolute paths, so that it means the same in any working folder; with
    `threads` as its CPU threads when it names none (a Ray task gets that many CPUs)."""
    validation = config.validation
    if isinstance(validation, str):
        validation = _absolute_source(validation)
    return dataclasses.replace(
        config,
        data=_absolute_source(config.data),
        validation=validation,
        test=_absolute_source(config.test),
        model_file=None if config.model_file is None else str(Path(config.model_file).resolve()),
        runs_dir=str(Path(config.runs_dir).resolve()),
        threads=config.threads if config.threads is not None else threads,
    )


def _train_in_worker(config: TrainingConfig, offline: bool) -> str:
    """A Ray task: train one run, quietly; its run folder's path (the driver loads it from there)."""
    from digitlab.training.fit import train

    return str(train(config, offline=offline, verbose=0).path)


def train_runs(configs: Sequence[TrainingConfig], offline: bool = False, address: str | None = None,
               cpus_per_run: int = 1, on_finished=None) -> list[Path]:
    """Train each config as a Ray task (in parallel as the cluster's CPUs allow); their run folders,
    in the order of `configs`. `on_finished(index, folder)` is called as each one finishes."""
    with connected(address) as ray:
        task = ray.remote(num_cpus=cpus_per_run, max_retries=0)(_train_in_worker)
        pending = {task.remote(portable_config(config, cpus_per_run), offline): index
                   for index, config in enumerate(configs)}
        folders: dict[int, Path] = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            try:
                folders[index] = Path(ray.get(done[0]))
            except ray.exceptions.RayTaskError as error:
                for reference in pending:
                    ray.cancel(reference)
                raise _worker_error(error) from None
            if on_finished is not None:
                on_finished(index, folders[index])
    return [folders[index] for index in range(len(configs))]




def _worker_error(error: Exception) -> Exception:
    """The digitlab error a Ray task raised, as itself, so the user sees one clear line."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, DigitlabError):
        return cause
    return DigitlabError(f"a Ray task failed: {str(cause or error).strip().splitlines()[-1]}")
