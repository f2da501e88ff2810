"""Ensembles: several trained models whose probabilities are averaged.

`train_ensemble` trains the members, each an ordinary training run, inside one folder:

    runs/<time>-ensemble-<recipe>/
        ensemble.json        the members, their figures and how they are combined
        config.toml          the settings the members share, and how they differ
        metrics.json         the ensemble's validation and test figures, and each member's
        report.html, ...     the ensemble's report (on the test data, else the validation split)
        members/<run>/       each member's own run folder

Members differ by seed ("seed"), by seed and a bootstrap sample of the training split
("bagging"), or by architecture ("models"). All members share one validation split, the test
data is only reported on, and nothing is chosen by it. An ensemble folder is accepted wherever
a model is: `digitlab.load_model(folder)` gives a Classifier that averages the members.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digitlab.shape import NUM_CLASSES

if TYPE_CHECKING:
    import keras

    from digitlab.inference.model_files import OnnxModel


__all__ = [
    "DEFAULT_MEMBERS",
    "ENSEMBLE_FILENAME",
    "VARIATIONS",
    "load_ensemble_members",
    "mean_probabilities_function",
    "read_ensemble",
]

ENSEMBLE_FILENAME = "ensemble.json"
MEMBERS_FOLDER = "members"
ENSEMBLE_FORMAT = "digitlab-ensemble"
ENSEMBLE_FORMAT_VERSION = 1
AVERAGING = "mean of probabilities"
VARIATIONS = ("seed", "bagging", "models")
DEFAULT_MEMBERS = 3

PredictFunction = Callable[[np.ndarray], np.ndarray]


# --- combining members ----------------------------------------------------------------------


def mean_probabilities_function(predict_functions: Sequence[PredictFunction]) -> PredictFunction:
    """A predict function giving the mean of `predict_functions`' float32 (N, 10) probabilities."""
    functions = list(predict_functions)
    if not functions:
        raise ValueError("an ensemble needs at least one member")

    def predict(images: np.ndarray) -> np.ndarray:
        total = np.zeros((len(images), NUM_CLASSES), dtype=np.float64)
        for function in functions:
            total += np.asarray(function(images), dtype=np.float64)
        return (total / len(functions)).astype(np.float32)

    return predict


def _ensemble_file(path: str | Path) -> Path:
    """The ensemble.json of an ensemble folder, or `path` itself if it names that file."""
    path = Path(path).expanduser()
    return path if path.name == ENSEMBLE_FILENAME and not path.is_dir() else path / ENSEMBLE_FILENAME


def read_ensemble(path: str | Path) -> list[Path]:
    """The members' model paths (run folders) listed by an ensemble folder's `ensemble.json`.

    `path` is the ensemble folder or its ensemble.json. A file that cannot be read, is not
    valid JSON, lists no members or names a member that is not there raises
    `digitlab.inference.model_files.ModelError` naming ensemble.json.
    """
    from digitlab.inference.model_files import ModelError

    file = _ensemble_file(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(file, "no such file; an ensemble folder holds ensemble.json") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(file, f"cannot be read ({error})") from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelError(
            file, f"not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    members = content.get("members") if isinstance(content, dict) else None
    if not isinstance(members, list) or not members:
        raise ModelError(file, 'not a digitlab ensemble: expected {"members": [{"path": ...}, ...]}')
    paths = []
    for number, member in enumerate(members, start=1):
        member_path = member.get("path") if isinstance(member, dict) else None
        if not isinstance(member_path, str) or not member_path.strip():
            raise ModelError(file, f'member {number} has no "path" to its run folder or model file')
        resolved = file.parent / member_path
        if not resolved.exists():
            raise ModelError(file, f"member {number}, {member_path}, is missing (no {resolved})")
        paths.append(resolved)
    return paths


def load_ensemble_members(path: str | Path, prefer_onnx: bool = False) -> list[keras.Model | OnnxModel]:
    """The members' models of the ensemble at `path` (the folder or its ensemble.json): Keras
    models, or with `prefer_onnx` each member's up-to-date ONNX copy where it has one (see
    `digitlab.inference.model_files.fastest_model_file`).

    Any problem, with ensemble.json or with a member's model, raises
    `digitlab.inference.model_files.ModelError` naming ensemble.json.
    """
    from digitlab.inference.model_files import ModelError, fastest_model_file, load_model

    paths = read_ensemble(path)
    file = _ensemble_file(path)
    members = []
    for number, member_path in enumerate(paths, start=1):
        try:
            members.append(load_model(fastest_model_file(member_path) if prefer_onnx else member_path))
        except ModelError as error:
            raise ModelError(file, f"member {number} cannot be loaded: {error}") from error
    return members















