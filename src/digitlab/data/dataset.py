"""The one in-memory form of digit data: uint8 images (N, 28, 28) and int64 labels (N,) or None."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Dataset:
    """Digit images with optional labels.

    `images` is uint8 with shape (N, 28, 28), white ink on black as in MNIST; `labels` is int64
    with shape (N,) and values 0..9, or None for unlabelled data such as Kaggle's test.csv.
    `show_samples`, `plot_class_distribution` and `show` draw it as matplotlib figures.
    """

    images: np.ndarray
    labels: np.ndarray | None = None
    name: str = "dataset"
    origin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise ValueError(f"images must have shape (N, 28, 28), got {images.shape}")
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {images.dtype}")
        object.__setattr__(self, "images", images)
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.shape != (len(images),):
                raise ValueError(
                    f"{len(images)} images but labels have shape {labels.shape}"
                )
            if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
                raise ValueError("labels must be 0..9")
            object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))

    @classmethod
    def from_arrays(cls, images: Any, labels: Any = None, name: str = "arrays") -> Dataset:
        """A dataset of the arrays a notebook holds, converted and checked.

        `images`: (N, 784), (N, 28, 28) or (N, 28, 28, 1); uint8, integers 0..255, floats in
        [0, 1] (scaled and rounded) or floats holding whole numbers 0..255. `labels`: integers
        0..9, one-hot rows (N, 10) or a pandas Series. Anything else is a `DataError` saying
        what was expected and what was found.

        >>> (x_train, y_train), _ = keras.datasets.mnist.load_data()
        >>> digitlab.Dataset.from_arrays(x_train / 255.0, keras.utils.to_categorical(y_train))
        """
        from digitlab.data.arrays import from_arrays

        return from_arrays(images, labels, name)

    @classmethod
    def from_dataframe(cls, frame: Any, name: str = "dataframe") -> Dataset:
        """A dataset of a DataFrame in Kaggle's layout, as `pandas.read_csv("train.csv")` gives it:
        an optional `label` column and `pixel0` .. `pixel783`.

        >>> digitlab.Dataset.from_dataframe(pandas.read_csv("train.csv"))
        """
        from digitlab.data.arrays import from_dataframe

        return from_dataframe(frame, name)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        labelled = "labelled" if self.is_labelled else "unlabelled"
        return f"Dataset({self.name!r}, {len(self)} images, {labelled})"

    @property
    def is_labelled(self) -> bool:
        return self.labels is not None

    def class_counts(self) -> np.ndarray:
        """Number of images of each digit 0..9."""
        if self.labels is None:
            raise ValueError(f"{self.name} has no labels")
        return np.bincount(self.labels, minlength=NUM_CLASSES)

    def subset(self, indices: np.ndarray | slice, name: str | None = None) -> Dataset:
        """The images (and labels) at `indices`, as a new dataset."""
        labels = None if self.labels is None else self.labels[indices]
        return Dataset(self.images[indices], labels, name or self.name, self.origin)

    def split(
        self, validation: float | int, seed: int = 0, stratify: bool = True
    ) -> tuple[Dataset, Dataset]:
        """Split off a validation set: a fraction in (0, 1) or a count of images.

        The split is seeded and, for labelled data, stratified so that every class keeps its
        share. Returns (train, validation), named after the data and their role: "mnist-train"
        splits into "mnist-train" and "mnist-validation", never "mnist-train-train".
        """
        from digitlab.data.splits import split_names, validation_indices

        train_index, validation_index = validation_indices(
            len(self), validation, self.labels if stratify else None, seed
        )
        train_name, validation_name = split_names(self.name)
        return self.subset(train_index, train_name), self.subset(validation_index, validation_name)

    # Pictures, for notebooks: each returns a matplotlib Figure, which a notebook shows inline
    # and `digitlab.data.pictures.save` writes as PNG. Matplotlib is imported only when one is drawn.

    def show_samples(self, rows: int = 5, columns: int = 10, seed: int = 0) -> Figure:
        """A grid of `rows` x `columns` randomly chosen images, titled with their labels.

        >>> digitlab.load("mnist").show_samples(rows=2)
        """
        from digitlab.data.pictures import sample_grid

        return sample_grid(self, rows=rows, columns=columns, seed=seed)

    def plot_class_distribution(self) -> Figure:
        """A bar chart of how many images each digit 0..9 has (labelled data only)."""
        from digitlab.data.pictures import class_distribution

        if not self.is_labelled:
            raise ValueError(f"{self.name} has no labels: the class distribution needs them")
        return class_distribution([self])

    def show(self, index: int) -> Figure:
        """Image `index` drawn large, with its label and the value of each pixel."""
        from digitlab.data.pictures import single_image

        return single_image(self, index)
