"""digitlab: train, understand and use handwritten-digit recognisers.

>>> import digitlab
>>> train = digitlab.load("mnist")                  # a Dataset: images, labels, split(), show()
>>> run = digitlab.train(epochs=3)                  # trains, writes runs/<time>-keras-example/
>>> run.plot_confusion_matrix()
>>> classifier = digitlab.load_model(run.path)      # later: the saved model, as a Classifier
>>> classifier.predict(["my-digit.png"])
>>> mine = digitlab.finetune(run.path, "my-digits")  # taught your handwriting: runs/<time>-finetune/

The names that need Keras (train, finetune, load_model, Classifier, Run, models) are imported on first
use, so that the data functions start in a fraction of a second.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# Keras 3 runs on TensorFlow unless the user already chose a backend.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up chatter hides digitlab's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from digitlab.data.dataset import Dataset
from digitlab.data.sources import load, load_parts
from digitlab.errors import DigitlabError  # noqa: E402

if TYPE_CHECKING:
    from digitlab import models
    from digitlab.inference.classifier import Classifier, load_model
    from digitlab.runs.run import Run
    from digitlab.training.api import train
    from digitlab.training.finetune import finetune

# Public name -> (module, attribute in it; None for the module itself).
_LAZY = {
    "train": ("digitlab.training.api", "train"),
    "finetune": ("digitlab.training.finetune", "finetune"),
    "load_model": ("digitlab.inference.classifier", "load_model"),
    "Classifier": ("digitlab.inference.classifier", "Classifier"),
    "Run": ("digitlab.runs.run", "Run"),
    "models": ("digitlab.models", None),
}

__all__ = ["Classifier", "Dataset", "DigitlabError", "Run", "__version__", "finetune", "load", "load_model",
           "load_parts", "models", "train"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'digitlab' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
