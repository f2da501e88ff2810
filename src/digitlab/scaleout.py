"""Running digitlab's work on Ray: connecting, and training runs as Ray tasks.

Ray is an optional extra (`pip install "digitlab[ray]"`) and is imported only here and in the
modules that run on it, only when asked to, so the core install never needs it.

`connected(address)` uses a Ray that is already initialised in this process, else connects to
the cluster at `address`, else starts a local Ray for the duration of the block. Paths in a
training config are made absolute before they travel, because Ray workers (and Tune trials)
do not run in the caller's folder; the digitlab environment variables (data folder, cache,
offline) travel with the work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from digitlab.config import TrainingConfig
from digitlab.errors import DigitlabError

if TYPE_CHECKING:
    from digitlab.training import Run

INSTALL_HINT = 'Ray is not installed; install it with: pip install "digitlab[ray]"'
# Variables that decide where data comes from; the workers need the caller's values.
_FORWARDED_VARIABLES = ("DIGITLAB_DATA", "DIGITLAB_CACHE", "DIGITLAB_OFFLINE", "DIGITLAB_MIRRORS",
                        "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")


def import_ray() -> ModuleType:
    """The ray module, or a DigitlabError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DigitlabError(INSTALL_HINT) from None
    return ray


def forwarded_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in _FORWARDED_VARIABLES if name in os.environ}


@contextlib.contextmanager
def connected(address: str | None = None) -> Iterator[ModuleType]:
    """Ray, initialised: the running one, the cluster at `address`, or a local one started now.

    A Ray started (or connected to) here is shut down when the block ends; one that was
    already initialised is left running.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": forwarded_environment()})
    except ConnectionError as error:
        raise DigitlabError(f"cannot connect to the Ray cluster at {address}: {error}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _absolute_source(source: str | None) -> str | None:
    """A data source with its file part made absolute; names such as "mnist" stay as they are."""
    from digitlab.sources import split_part

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
    from digitlab.training import train

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


def finished_run(folder: Path) -> Run:
    """The Run a worker left in `folder`: its config, model, history and metrics, read back."""
    import pandas as pd

    from digitlab.config import apply, read_toml
    from digitlab.modelio import load_model
    from digitlab.training import Run

    settings = read_toml(folder / "config.toml")
    settings.pop("versions", None)
    config = apply(TrainingConfig(), settings, str(folder / "config.toml"))
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    return Run(folder, config, load_model(folder), pd.read_csv(folder / "history.csv"), metrics)


def _worker_error(error: Exception) -> Exception:
    """The digitlab error a Ray task raised, as itself, so the user sees one clear line."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, DigitlabError):
        return cause
    return DigitlabError(f"a Ray task failed: {str(cause or error).strip().splitlines()[-1]}")
