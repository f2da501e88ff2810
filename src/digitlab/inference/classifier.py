"""A trained digit model and what a user does with it: evaluate, predict, submit, draw.

`digitlab.load_model(path)` gives a `Classifier` for a saved model, and a training `Run` hands
the same work to a `Classifier` of its model. The command line's evaluate, predict and submit
commands use these functions too, so notebook and command line give the same answers.

Images go to the model as digitlab holds them, uint8 (N, 28, 28) with white ink on black;
`digitlab.inference.model_files.input_adapter` reshapes and scales them to what each model takes.

A Classifier may also be an ensemble, several models whose probabilities are averaged (an
ensemble folder holding `ensemble.json`, see `digitlab.inference.ensembles`), and may average over
slightly shifted copies of each image (`tta=True`, see `digitlab.inference.tta`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from digitlab.data.arrays import as_dataset, images_from_array, is_dataframe
from digitlab.data.dataset import Dataset
from digitlab.data.formats.image_folder import read_image
from digitlab.data.sources import load
from digitlab.errors import DigitlabError
from digitlab.evaluation.metrics import MOST_MISTAKES_SHOWN, Evaluation, evaluate
from digitlab.inference import model_files as modelio
from digitlab.inference.ensembles import ENSEMBLE_FILENAME, load_ensemble_members, mean_probabilities_function
from digitlab.inference.predict import images_to_predict, labelled_submission_warning, write_submission
from digitlab.inference.tta import tta_predict_function
from digitlab.outputs import check_new
from digitlab.shape import IMAGE_SIDE

if TYPE_CHECKING:
    import keras
    import pandas
    from matplotlib.figure import Figure

    from digitlab.recognition.batch import FileReading, ImageFile
    from digitlab.recognition.readings import Reading

__all__ = ["DEFAULT_EVALUATION_DATA", "Classifier", "DataSource", "Images", "as_images", "load_model"]

DEFAULT_EVALUATION_DATA = "mnist:test"

DataSource = Union[str, Path, Dataset, tuple, "pandas.DataFrame"]
"""Labelled data: a source such as "mnist:test" or "train.csv", a Dataset, a pair (images, labels)
of arrays or a DataFrame in Kaggle's layout (see `digitlab.data.arrays`)."""

Images = Union[np.ndarray, Dataset, str, Path, Sequence[Union[str, Path, np.ndarray]], "pandas.DataFrame"]
"""Images to predict: an array (N, 784), (N, 28, 28), (N, 28, 28, 1) or one (28, 28) image, of
uint8 or [0, 1] floats (see `digitlab.data.arrays`), a Dataset, a DataFrame of Kaggle's pixel
columns, a source, or a list of image files."""


def as_images(images: Images, offline: bool = False) -> np.ndarray:
    """uint8 (N, 28, 28) images from any of the forms `Classifier.predict` takes.

    A source (a file or folder name, "mnist:test") gives its test part when it has one, as the
    `predict` command does; a list may hold image file paths (28x28 greyscale) or arrays. Arrays
    are converted as `Dataset.from_arrays` converts them.
    """
    if isinstance(images, Dataset) or is_dataframe(images):
        return as_dataset(images, "images").images
    if isinstance(images, (str, Path)):
        return images_to_predict(images, offline).images
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images to predict: the list is empty")
        images = np.stack(
            [read_image(item) if isinstance(item, (str, Path)) else np.asarray(item) for item in images]
        )
    array = np.asarray(images)
    if array.shape == (IMAGE_SIDE, IMAGE_SIDE):
        array = array[np.newaxis]
    return images_from_array(array, "images")


class Classifier:
    """A trained digit model: evaluate it, predict with it, write a Kaggle submission, draw figures.

    `model` is a Keras model taking 28x28 images in a shape `digitlab.inference.model_files.input_adapter`
    can feed and giving 10 classes, or a list of such models: an ensemble, whose probabilities
    are the mean of its members'. `path` is where it was loaded from, if anywhere. With `tta`,
    each image's probabilities are averaged over slightly shifted copies of it (test-time
    augmentation, see `digitlab.inference.tta`), which costs one prediction per copy. The attribute
    `model` is the Keras model (None for an ensemble), `members` the models averaged.

    Methods that take labelled `data` use `default_data` when it is None ("mnist:test" unless
    told otherwise); `default_evaluation`, if given, is the known evaluation of `default_data`
    (a `Run` passes the one made at the end of training) and is returned instead of a new one.

    >>> classifier = digitlab.load_model("runs/20261121-120000-keras-example")
    >>> classifier.evaluate("mnist:test").accuracy
    >>> classifier.predict(["my-digit.png"])          # array([7])
    """

    def __init__(
        self,
        model: keras.Model | Sequence[keras.Model],
        path: str | Path | None = None,
        *,
        default_data: DataSource | None = DEFAULT_EVALUATION_DATA,
        default_evaluation: Evaluation | None = None,
        batch_size: int = modelio.DEFAULT_BATCH_SIZE,
        tta: bool = False,
    ) -> None:
        if default_evaluation is not None and not isinstance(default_data, Dataset):
            raise ValueError("default_evaluation needs default_data: the Dataset it was made on")
        is_ensemble = isinstance(model, (list, tuple))
        members = list(model) if is_ensemble else [model]
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.model = None if is_ensemble else model
        self.members = members
        self.path = None if path is None else Path(path)
        self.default_data = default_data
        self.tta = tta
        self._default_evaluation = default_evaluation
        # input_adapter also checks that each model takes 28x28 images and gives 10 classes.
        adapters = [modelio.input_adapter(member, batch_size) for member in members]
        predict_function = mean_probabilities_function(adapters) if is_ensemble else adapters[0]
        self._probabilities_of = tta_predict_function(predict_function) if tta else predict_function

    def __repr__(self) -> str:
        if self.path is not None:
            name = str(self.path)
        else:
            name = "+".join(member.name for member in self.members)
        weights = sum(member.count_params() for member in self.members)
        kind = f"ensemble of {len(self.members)} models, " if self.model is None else ""
        augmented = ", test-time augmentation" if self.tta else ""
        return f"Classifier({name!r}, {kind}{weights:,} weights{augmented})"

    @property
    def predict_function(self) -> Callable[[np.ndarray], np.ndarray]:
        """The function from uint8 (N, 28, 28) images to float32 (N, 10) probabilities that every
        method uses: the model's (through `input_adapter`), an ensemble's mean, with TTA if on."""
        return self._probabilities_of

    def predict_probabilities(self, images: Images) -> np.ndarray:
        """float32 (N, 10): each image's probability of being each digit 0..9.

        `images` is an array (N, 784), (N, 28, 28), (N, 28, 28, 1) or one (28, 28) image, of
        uint8, integers 0..255 or floats in [0, 1] (see `Dataset.from_arrays`); a Dataset; a
        DataFrame of Kaggle's pixel columns; a source (a file or folder of digits; its test part
        if it has one) or a list of 28x28 image files.
        """
        return self._probabilities_of(as_images(images))

    def predict(self, images: Images) -> np.ndarray:
        """int64 (N,): the most probable digit of each image (one image gives an array of one).

        Takes the same `images` as `predict_probabilities`.
        """
        return self.predict_probabilities(images).argmax(axis=1)

    def read(self, image: Any, multi_digit: bool = True, debug_dir: str | Path | None = None) -> Reading:
        """Read the digits in a photo, scan or drawing (a path, bytes or a PIL image).

        The image is prepared as MNIST's digits were (see `digitlab.preparation`) and a number is
        read digit by digit, left to right: `model.read("house-number.jpg").text` -> "2026".
        With `debug_dir`, the 28x28 digits the model saw are written there as PNG.
        """
        from digitlab.recognition.readings import read

        return read(self._probabilities_of, image, multi_digit, None if debug_dir is None else Path(debug_dir))

    def read_many(
        self,
        files: Sequence[str | Path | ImageFile],
        multi_digit: bool = True,
        workers: int | None = None,
        debug_dir: str | Path | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[FileReading]:
        """Read many image files, fast: one FileReading per file, in order, with its status
        ("ok", "no digit" or "unreadable: <reason>"); a bad file never stops the others.

        The images are prepared by `workers` processes (default: one per CPU) and their digits
        predicted together; see `digitlab.recognition.batch.read_files`. `files` may come from
        `digitlab.recognition.batch.image_files(["scans/"])`, which also finds label folders 0..9.
        """
        from digitlab.recognition.batch import read_files

        return read_files(self._probabilities_of, files, multi_digit, workers, debug_dir, on_progress)

    def evaluate(self, data: DataSource | None = None) -> Evaluation:
        """Accuracy, loss, confusion matrix and per-class figures on labelled `data`.

        `data` is a source ("mnist:test", "train.csv"; a source with several parts gives its
        train part unless one is named), a Dataset, a pair (images, labels) of arrays with
        integer or one-hot labels, or a DataFrame in Kaggle's layout; None means `default_data`.
        """
        return self._evaluated(data)[1]

    def submit(
        self, test_csv: str | Path | Images, path: str | Path, force: bool = False, offline: bool = False
    ) -> Path:
        """Write a Kaggle Digit Recognizer submission (`ImageId,Label`) for the images of `test_csv`.

        `test_csv` is Kaggle's test.csv, a folder holding it, any other source, or images in
        memory as `predict` takes them (a Dataset, arrays, `pandas.read_csv("test.csv")`).
        An existing `path` is refused before any work unless `force`. Returns the path written.
        """
        path = check_new(path, force)
        test = images_to_predict(test_csv, offline) if isinstance(test_csv, (str, Path)) else test_csv
        predicted = self.predict(test)
        written = write_submission(path, predicted, force)
        if isinstance(test, Dataset) and test.is_labelled:
            source = test_csv if isinstance(test_csv, (str, Path)) else test.name
            print(labelled_submission_warning(source, test.labels, predicted), file=sys.stderr, flush=True)
        return written

    def plot_confusion_matrix(self, data: DataSource | None = None, normalize: bool = True) -> Figure:
        """The confusion matrix on `data` (see `evaluate`): rows true digits, columns predicted.

        With `normalize`, each cell is the percentage of its true digit's images, else a count.
        """
        from digitlab.evaluation import figures  # matplotlib: only drawing needs it

        return figures.confusion_matrix_figure(self.evaluate(data).confusion, normalize=normalize)

    def plot_mistakes(self, data: DataSource | None = None, count: int = MOST_MISTAKES_SHOWN) -> Figure:
        """The `count` most confidently wrong images of `data` (see `evaluate`), each titled
        with its true digit, the prediction and the model's confidence."""
        from digitlab.evaluation.report import mistakes_figure

        dataset, evaluation = self._evaluated(data)
        return mistakes_figure(evaluation, dataset, count)

    def plot_predictions(self, data: DataSource | Images | None = None, count: int = 10, seed: int = 0) -> Figure:
        """`count` images of `data` drawn at random (seeded), each titled with the digit predicted
        and the model's confidence; where `data` is labelled, wrong ones are titled in red with
        the true digit. `data` is a source, a Dataset, a pair (images, labels), a DataFrame or
        images (see `predict`); None means `default_data`."""
        from digitlab.evaluation import figures

        if data is None:
            data = self.default_data
        if data is None:
            raise DigitlabError("no images to show: give a source, a Dataset or images")
        if isinstance(data, (str, Path, Dataset)) or is_dataframe(data) or _is_images_and_labels(data):
            dataset = _as_data(data)
        else:
            dataset = Dataset(as_images(data), name="images")
        chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), min(count, len(dataset)), replace=False))
        probabilities = self.predict_probabilities(dataset.images[chosen])
        return figures.predictions_gallery(
            dataset.images[chosen], probabilities.argmax(axis=1), probabilities.max(axis=1),
            None if dataset.labels is None else dataset.labels[chosen],
            title=f"{len(chosen)} of the {len(dataset):,} images of {dataset.name}",
        )

    def _evaluated(self, data: DataSource | None) -> tuple[Dataset, Evaluation]:
        if data is None:
            if self.default_data is None:
                raise DigitlabError("no data to evaluate on: give labelled data, e.g. \"mnist:test\"")
            if self._default_evaluation is not None:
                return self.default_data, self._default_evaluation
            data = self.default_data
        dataset = _as_data(data)
        return dataset, evaluate(self._probabilities_of, dataset)


def _as_data(data: DataSource) -> Dataset:
    """Labelled data as a Dataset: a source loaded, digits in memory through `as_dataset`."""
    return load(data) if isinstance(data, (str, Path)) else as_dataset(data, "data")


def _is_images_and_labels(value: Any) -> bool:
    """A pair (images, labels) of arrays, not a list of two image files."""
    return isinstance(value, tuple) and len(value) == 2 and not isinstance(value[0], (str, Path))


def load_model(path: str | Path, tta: bool = False, prefer_onnx: bool = False) -> Classifier:
    """Load a trained model as a Classifier: a `.keras` file, a run folder or a legacy `.h5`,
    or an ensemble folder (one holding `ensemble.json`, as `digitlab.training.ensembles.train_ensemble`
    writes), whose Classifier averages its members' probabilities.

    With `tta`, predictions average over shifted copies of each image (see `digitlab.inference.tta`).
    With `prefer_onnx`, a run folder (or each member of an ensemble) is read from its ONNX copy
    `model.onnx` when that is up to date: the same answers, without starting TensorFlow (see
    `digitlab.inference.model_files.fastest_model_file`); the command line does this.
    Models load in Keras's safe mode (a file carrying Python code is refused); any problem
    raises `digitlab.inference.model_files.ModelError` naming the file.

    >>> classifier = digitlab.load_model("runs/20261121-120000-keras-example")
    >>> classifier.predict(digitlab.load("mnist:test").images[:5])
    """
    folder = Path(path).expanduser()
    if folder.name == ENSEMBLE_FILENAME and folder.is_file():
        folder = folder.parent
    if (folder / ENSEMBLE_FILENAME).is_file():
        return Classifier(load_ensemble_members(folder, prefer_onnx), folder, tta=tta)
    model_file = modelio.fastest_model_file(path) if prefer_onnx else path
    return Classifier(modelio.load_model(model_file), path, tta=tta)
