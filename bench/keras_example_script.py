"""The Keras "Simple MNIST convnet" example as people run it, stopped at 99% test accuracy.

Run: DIGITLAB_DATA=../shared/data/mnist python bench/keras_example_script.py

A plain script that does not use digitlab: the baseline `bench/commands.py` times as a whole
process. It reads MNIST from the IDX .gz files in $DIGITLAB_DATA (no download), builds the
example's convnet (two 3x3 convolutions of 32 and 64 filters, each followed by 2x2 max pooling,
then dropout 0.5 and a softmax layer), and trains it with Adam, batch 128 and 10% of the
training images held out for validation. After each epoch it evaluates the test set, prints
"epoch N: test accuracy A", and stops once A >= 0.99 (at most 15 epochs).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import keras
import numpy as np

TARGET = 0.99
MAX_EPOCHS = 15
BATCH_SIZE = 128


def read_idx(path: Path) -> np.ndarray:
    """The array in an IDX .gz file: a big-endian header of dimension sizes, then uint8 data."""
    raw = gzip.decompress(path.read_bytes())
    dimensions = raw[3]
    shape = np.frombuffer(raw, dtype=">u4", count=dimensions, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def load_part(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images scaled to 0..1 with a channel axis, and one-hot labels."""
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz").astype("float32") / 255
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    return images[..., np.newaxis], keras.utils.to_categorical(labels, 10)


def build_model() -> keras.Model:
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


class StopAtTestAccuracy(keras.callbacks.Callback):
    """Evaluates the test set after each epoch and stops training once it reaches `target`."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, target: float):
        super().__init__()
        self.images, self.labels, self.target = images, labels, target

    def on_epoch_end(self, epoch, logs=None):
        _, accuracy = self.model.evaluate(self.images, self.labels, batch_size=1024, verbose=0)
        print(f"epoch {epoch + 1}: test accuracy {accuracy:.4f}", flush=True)
        if accuracy >= self.target:
            self.model.stop_training = True


def main() -> None:
    folder = Path(os.environ["DIGITLAB_DATA"])
    train_images, train_labels = load_part(folder, "train")
    test_images, test_labels = load_part(folder, "t10k")
    model = build_model()
    model.fit(
        train_images, train_labels, batch_size=BATCH_SIZE, epochs=MAX_EPOCHS, validation_split=0.1,
        callbacks=[StopAtTestAccuracy(test_images, test_labels, TARGET)], verbose=2,
    )


if __name__ == "__main__":
    main()
