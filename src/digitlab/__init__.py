"""digitlab: train, understand and use handwritten-digit recognisers."""

import os

# Keras 3 runs on TensorFlow unless the user already chose a backend.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up chatter hides digitlab's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from digitlab.dataset import Dataset  # noqa: E402
from digitlab.errors import DigitlabError  # noqa: E402
from digitlab.sources import load, load_parts  # noqa: E402

__all__ = ["Dataset", "DigitlabError", "__version__", "load", "load_parts"]
