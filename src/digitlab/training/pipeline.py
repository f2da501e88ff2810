"""Feeding images to Keras: shuffled batches, with on-the-fly augmentation when asked.

Images stay uint8 from disk to model; augmentation works on floats and rounds back to uint8, so
what the model sees in training has the same form as what it sees in use.
"""

from __future__ import annotations

import math

import numpy as np

from digitlab.compute.backend import keras as _keras
from digitlab.data.dataset import Dataset
from digitlab.recipes.config import Augmentation
from digitlab.shape import NUM_CLASSES

keras = _keras()


def augmenter(augmentation: Augmentation, seed: int):
    """A Keras layer stack that randomly rotates, zooms and shifts (N, 28, 28, 1) float images."""
    from keras import layers

    steps = []
    fill = {"fill_mode": "constant", "fill_value": 0.0, "interpolation": "bilinear"}
    if augmentation.rotation:
        steps.append(layers.RandomRotation(augmentation.rotation / 360.0, seed=seed, **fill))
    if augmentation.zoom:
        steps.append(layers.RandomZoom(augmentation.zoom, augmentation.zoom, seed=seed + 1, **fill))
    if augmentation.width_shift or augmentation.height_shift:
        steps.append(layers.RandomTranslation(
            augmentation.height_shift, augmentation.width_shift, seed=seed + 2, **fill
        ))
    return keras.Sequential(steps, name="augmentation")


def batch_augmenter(augmentation: Augmentation, seed: int):
    """A function (uint8 images (N, 28, 28), the batch's index) -> the images augmented, uint8.

    It runs the writers' changes (`digitlab.training.augment`), then rotation, zoom and shifts, then the
    captures' changes. The writers' and captures' changes draw from (seed, batch index), so a
    batch's are the same whatever order the batches are augmented in.
    """
    import tensorflow as tf

    from digitlab.training.augment import capture_changes, writer_changes

    layer_stack = augmenter(augmentation, seed)

    def augment(images, batch_index):
        batch_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(batch_index, tf.int64)])
        floats = writer_changes(tf.cast(images, tf.float32), augmentation, batch_seed)
        if layer_stack.layers:
            floats = layer_stack(floats[..., None], training=True)[..., 0]
        changed = capture_changes(floats, augmentation, batch_seed)
        return tf.cast(tf.round(tf.clip_by_value(changed, 0.0, 255.0)), tf.uint8)

    return augment


def batches(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    augmentation: Augmentation | None = None,
    one_hot: bool = False,
    training: bool = True,
):
    """A tf.data pipeline of (images, labels) batches; repeats forever when training."""
    import tensorflow as tf

    labels = dataset.labels
    targets = np.eye(NUM_CLASSES, dtype=np.float32)[labels] if one_hot else labels
    data = tf.data.Dataset.from_tensor_slices((dataset.images, targets))
    if training:
        data = data.shuffle(len(dataset), seed=seed, reshuffle_each_iteration=True).repeat()
    data = data.batch(batch_size)
    if training and augmentation is not None and augmentation.active:
        augment = batch_augmenter(augmentation, seed)
        data = data.enumerate().map(
            lambda batch_index, batch: (augment(batch[0], batch_index), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return data.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(dataset: Dataset, batch_size: int) -> int:
    return math.ceil(len(dataset) / batch_size)
