"""Finished runs and ensembles as Python objects: their folder, model, history and figures."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digitlab.data.dataset import Dataset
from digitlab.recipes.config import TrainingConfig
from digitlab.runs.classifier_methods import ClassifierMethods
from digitlab.runs.folder import HISTORY_FILE, METRICS_FILE, run_config

if TYPE_CHECKING:
    import pandas
    from matplotlib.figure import Figure

    from digitlab.evaluation.metrics import Evaluation
    from digitlab.inference.classifier import Classifier


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
        return f"Run({str(self.path)!r}, {self.config.recipe}{self._accuracy_text()})"

    @functools.cached_property
    def classifier(self) -> Classifier:
        """A `Classifier` of the run's model, defaulting to the run's evaluation data."""
        from digitlab.inference.classifier import Classifier

        return Classifier(self.model, self.path, default_data=self.evaluation_data,
                          default_evaluation=self.evaluation)

    def plot_curves(self) -> Figure:
        """Accuracy, loss and learning rate per epoch, training against validation; the epoch
        the model was kept from is marked."""
        from digitlab.evaluation import figures  # matplotlib: only drawing needs it

        return figures.training_curves(self.history, self.metrics.get("best_epoch"))


@dataclass
class EnsembleRun(ClassifierMethods):
    """A trained ensemble: its folder, members' runs, the ensemble's figures and evaluation.

    `path` is the ensemble folder; `config` the settings the members share (each member's own
    is `members[i].config`); `vary` how they differ; `metrics` what metrics.json holds.
    `evaluation` is the ensemble's evaluation on `evaluation_data`: the test data, or the
    validation split when there is no test data.

    Evaluating, predicting and submitting go through `ensemble.classifier`, a `Classifier`
    averaging the members; with `data=None` they use `evaluation_data` and its evaluation.
    """

    path: Path
    config: TrainingConfig
    vary: str
    members: list[Run]
    metrics: dict[str, Any] = field(default_factory=dict)
    evaluation: Evaluation | None = field(default=None, repr=False)
    evaluation_data: Dataset | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        members = f"{len(self.members)} members by {self.vary}"
        return f"EnsembleRun({str(self.path)!r}, {members}{self._accuracy_text()})"

    @functools.cached_property
    def classifier(self) -> Classifier:
        """A `Classifier` averaging the members, defaulting to the ensemble's evaluation data."""
        from digitlab.inference.classifier import Classifier

        return Classifier([member.model for member in self.members], self.path,
                          default_data=self.evaluation_data, default_evaluation=self.evaluation)


def finished_run(folder: Path) -> Run:
    """The Run a worker left in `folder`: its config, model, history and metrics, read back."""
    import pandas as pd  # pandas and Keras load only when a run is read back

    from digitlab.inference.model_files import load_model

    metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    return Run(folder, run_config(folder), load_model(folder), pd.read_csv(folder / HISTORY_FILE), metrics)
