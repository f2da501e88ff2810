"""What a trained run and an ensemble share: using their model through `self.classifier`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from digitlab.evaluation.metrics import MOST_MISTAKES_SHOWN

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

    from digitlab.evaluation.metrics import Evaluation
    from digitlab.inference.classifier import Classifier, DataSource, Images


class ClassifierMethods:
    """Evaluate, predict, submit and plot through `self.classifier`; with `data=None`, the
    data evaluated at the end of training (the test data, or the validation split if none)."""

    classifier: Classifier
    metrics: dict

    def _accuracy_text(self) -> str:
        """', accuracy 0.9912' from the test figure (the validation one if there is no test data)."""
        accuracy = self.metrics.get("test_accuracy", self.metrics.get("validation_accuracy"))
        return f", accuracy {accuracy:.4f}" if accuracy is not None else ""

    def evaluate(self, data: DataSource | None = None) -> Evaluation:
        """Accuracy, loss, confusion matrix and per-class figures on labelled `data` (a source, a
        Dataset, (images, labels) arrays or a DataFrame; see `Classifier.evaluate`); None: the
        evaluation made at the end of training."""
        return self.classifier.evaluate(data)

    def predict(self, images: Images) -> np.ndarray:
        """The predicted digit of each image; see `Classifier.predict` for the forms `images` takes."""
        return self.classifier.predict(images)

    def predict_probabilities(self, images: Images) -> np.ndarray:
        """float32 (N, 10) probabilities of each digit; see `Classifier.predict_probabilities`."""
        return self.classifier.predict_probabilities(images)

    def submit(self, test_csv: str | Path | Images, path: str | Path, force: bool = False,
               offline: bool = False) -> Path:
        """Write a Kaggle submission for `test_csv`; see `Classifier.submit`."""
        return self.classifier.submit(test_csv, path, force, offline)

    def plot_confusion_matrix(self, data: DataSource | None = None, normalize: bool = True) -> Figure:
        """The confusion matrix on `data` (None: see `evaluate`), in percent of each true digit
        with `normalize`, else in counts."""
        return self.classifier.plot_confusion_matrix(data, normalize)

    def plot_mistakes(self, data: DataSource | None = None, count: int = MOST_MISTAKES_SHOWN) -> Figure:
        """The `count` most confident mistakes on `data` (None: see `evaluate`)."""
        return self.classifier.plot_mistakes(data, count)

    def plot_predictions(self, data: DataSource | Images | None = None, count: int = 10, seed: int = 0) -> Figure:
        """`count` images of `data` (None: see `evaluate`) titled with the digit predicted; see
        `Classifier.plot_predictions`."""
        return self.classifier.plot_predictions(data, count, seed)
