"""Checkpoints of a run in progress, so that training survives a crash, a kill or Ctrl-C.

At the end of every epoch training writes `RUN/checkpoints/last.npz`, and `best.npz` when the
epoch is the best so far by `checkpoint_monitor`. Each is one file, written through
`digitlab.outputs` (a temporary name, then a rename), so a checkpoint is always whole: either
the previous one or the new one. It holds every variable of the model (weights and the states of
its random layers), every variable of the optimizer (step count, learning rate, moments) and a
JSON record: the epoch reached, the history rows so far and the best epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.compute.devices import model_scope
from digitlab.errors import DigitlabError
from digitlab.outputs import write_file

FOLDER = "checkpoints"
FORMAT = 1


@dataclass
class Checkpoint:
    """What a checkpoint file holds."""

    epoch: int  # epochs completed (1-based): training continues with epoch + 1
    model_variables: list[np.ndarray]
    optimizer_variables: list[np.ndarray]
    history: list[dict[str, float]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # best epoch, best value, ...


def path(run_dir: str | Path, name: str = "last") -> Path:
    return Path(run_dir) / FOLDER / f"{name}.npz"


def capture(model, epoch: int, history: list[dict[str, float]], state: dict[str, Any] | None = None) -> Checkpoint:
    """The checkpoint of `model` (compiled, its optimizer built) after `epoch` epochs."""
    keras_ops = _ops()
    optimizer_variables = [keras_ops.convert_to_numpy(v) for v in model.optimizer.variables]
    return Checkpoint(epoch, [keras_ops.convert_to_numpy(v) for v in model.variables], optimizer_variables,
                      [dict(row) for row in history], dict(state or {}))


def save(checkpoint: Checkpoint, destination: str | Path) -> Path:
    """Write `checkpoint` to `destination` in one step: the old file stays whole until then."""
    record = {"format": FORMAT, "epoch": checkpoint.epoch, "history": checkpoint.history,
              "state": checkpoint.state, "model_variables": len(checkpoint.model_variables),
              "optimizer_variables": len(checkpoint.optimizer_variables)}
    arrays = {f"model_{index}": value for index, value in enumerate(checkpoint.model_variables)}
    arrays |= {f"optimizer_{index}": value for index, value in enumerate(checkpoint.optimizer_variables)}
    arrays["record"] = np.frombuffer(json.dumps(record).encode("utf-8"), dtype=np.uint8)

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    return write_file(destination, write, force=True)


def remove_unfinished(run_dir: str | Path) -> list[Path]:
    """Delete the half-written checkpoint files a killed run left (.last.tmp-*.npz and the like);
    the checkpoints themselves are always whole. Returns the files deleted."""
    stale = sorted(path(run_dir).parent.glob(".*.tmp-*"))
    for leftover in stale:
        leftover.unlink(missing_ok=True)
    return stale


def load(source: str | Path) -> Checkpoint:
    """Read a checkpoint file; a damaged or foreign file is a DigitlabError."""
    source = Path(source)
    try:
        with np.load(source, allow_pickle=False) as arrays:
            record = json.loads(arrays["record"].tobytes().decode("utf-8"))
            if record.get("format") != FORMAT:
                raise DigitlabError(f"{source}: checkpoint format {record.get('format')!r} is not one digitlab reads")
            model_variables = [arrays[f"model_{index}"] for index in range(record["model_variables"])]
            optimizer_variables = [arrays[f"optimizer_{index}"] for index in range(record["optimizer_variables"])]
    except FileNotFoundError:
        raise DigitlabError(f"{source}: no such checkpoint") from None
    except (OSError, ValueError, KeyError) as error:
        if isinstance(error, DigitlabError):
            raise
        raise DigitlabError(f"{source}: not a readable digitlab checkpoint ({error})") from None
    return Checkpoint(int(record["epoch"]), model_variables, optimizer_variables,
                      record.get("history", []), record.get("state", {}))


def restore(model, checkpoint: Checkpoint, source: str | Path = "checkpoint") -> None:
    """Put the checkpoint's variables into `model` and its (compiled) optimizer."""
    variables = list(model.variables)
    if len(variables) != len(checkpoint.model_variables):
        raise DigitlabError(f"{source}: the checkpoint holds {len(checkpoint.model_variables)} model variables, "
                            f"the model has {len(variables)}; was the recipe changed?")
    for variable, value in zip(variables, checkpoint.model_variables):
        if tuple(variable.shape) != value.shape:
            raise DigitlabError(f"{source}: variable {variable.path} has shape {tuple(variable.shape)}, "
                                f"the checkpoint {value.shape}; was the recipe changed?")
        variable.assign(value)
    optimizer = model.optimizer
    with model_scope(model):  # a distributed model's optimizer makes its variables on every device
        optimizer.build(model.trainable_variables)
    if len(optimizer.variables) != len(checkpoint.optimizer_variables):
        raise DigitlabError(f"{source}: the checkpoint holds {len(checkpoint.optimizer_variables)} optimizer "
                            f"variables, the optimizer has {len(optimizer.variables)}; was the recipe changed?")
    for variable, value in zip(optimizer.variables, checkpoint.optimizer_variables):
        variable.assign(value)


def _ops():
    from digitlab.compute.backend import keras

    return keras().ops
