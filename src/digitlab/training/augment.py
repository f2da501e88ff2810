"""Other writers and other captures: random changes to training digits, as TensorFlow ops on batches.

MNIST is one set of writers, scanned one way. Digits from other pens, hands and captures differ
in ways a model trained on MNIST alone never saw; these changes show it some of them. Each is
applied to a random share of the images (`Augmentation.probability`), each image with its own
random strength up to the option's value:

  stroke_width    strokes up to this many pixels thicker, or half as many thinner (grey dilation
                  or erosion)
  stretch         the digit's box stretched toward a square (1: up to a square, as preparing a
                  form's box-filling capture makes it) or its shorter side squeezed by up to half
                  as much (narrow writing); the longer side keeps its length
  slant           sheared up to this many degrees either way about its centre of mass
  elastic         a smooth random displacement field, its standard deviation in pixels
                  (`elastic_smoothness`: the field's Gaussian sigma)
  low_resolution  captured with as few as this many pixels across the digit's box, enlarged back
  binarise        thresholded to black and white at half the peak, give or take this share of it
  blur            a Gaussian blur of sigma up to this many pixels
  faint           uneven, grainy ink (gamma, pressure and grain; 1 the most), stretched back to
                  full strength

Whatever a change does to the ink's strength, the image is stretched back so its brightest pixel
is 255, as preparing a capture does.

`writer_changes` (pen, hand) and `capture_changes` (scanner, camera, form) take float images
(N, 28, 28) in [0, 255], white ink on black, and return the same; the input pipeline runs the
first before its rotation, zoom and shifts and the second after them. Randomness is stateless:
a batch's changes depend only on the seed pair given, so the same seed gives the same images.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf

from digitlab.recipes.config import Augmentation
from digitlab.shape import IMAGE_SIDE

DIGIT_BOX = 20  # pixels: MNIST fitted each digit's longer side into this, so capture sizes are of it
THINNING_SHARE = 0.5  # strokes thin by at most this share of `stroke_width`: MNIST's are only ~2 px
# Faint ink at strength 1: the ink levels raised to a power of up to e**GAMMA either way, and
# multiplied by a smooth gain whose logarithm has a standard deviation of PRESSURE and varies over
# PRESSURE_SMOOTHNESS pixels, and by a grain of up to GRAIN either way.
GAMMA = 1.0
PRESSURE = 0.7
PRESSURE_SMOOTHNESS = 3.0
GRAIN = 0.3

_STEPS = ("stroke", "geometry", "capture", "blur", "faint")


def writer_changes(images: tf.Tensor, augmentation: Augmentation, seed: tf.Tensor) -> tf.Tensor:
    """Stroke width, stretch, slant and elastic distortion, each as `augmentation` says."""
    seeds = _step_seeds(seed)
    if augmentation.stroke_width:
        images = _stroke_width(images, augmentation, seeds["stroke"])
    if augmentation.stretch or augmentation.slant or augmentation.elastic:
        images = _geometry(images, augmentation, seeds["geometry"])
    return images


def capture_changes(images: tf.Tensor, augmentation: Augmentation, seed: tf.Tensor) -> tf.Tensor:
    """Low resolution, binarisation, blur and faint ink, each as `augmentation` says."""
    seeds = _step_seeds(seed)
    if augmentation.low_resolution or augmentation.binarise:
        images = _capture(images, augmentation, seeds["capture"])
    if augmentation.blur:
        images = _blur(images, augmentation, seeds["blur"])
    if augmentation.faint:
        images = _faint(images, augmentation, seeds["faint"])
    return images


def _step_seeds(seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """One seed pair per step, so that turning a step on or off leaves the others' draws alone."""
    return dict(zip(_STEPS, _split(seed, len(_STEPS))))


def _split(seed: tf.Tensor, count: int) -> list[tf.Tensor]:
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def _draws(images: tf.Tensor, probability: float, seed: tf.Tensor, signed: bool = False):
    """Per image: whether it is changed, and a strength in [0, 1] ([-1, 1] when `signed`), 0 if not."""
    count = tf.shape(images)[:1]
    choice_seed, strength_seed = _split(seed, 2)
    chosen = tf.random.stateless_uniform(count, choice_seed) < probability
    strength = tf.random.stateless_uniform(count, strength_seed, minval=-1.0 if signed else 0.0, maxval=1.0)
    return chosen, tf.where(chosen, strength, 0.0)


def _on_chosen(images: tf.Tensor, chosen: tf.Tensor, change, *per_image: tf.Tensor) -> tf.Tensor:
    """`change(images, *per_image)` worked out for the chosen images only; the others pass through.

    Each change touches a share of the images, so this makes its cost that share of a batch's.
    """
    where = tf.where(chosen)
    changed = change(tf.gather_nd(images, where), *(tf.gather_nd(values, where) for values in per_image))
    return tf.tensor_scatter_nd_update(images, where, changed)


def _per_image(values: tf.Tensor) -> tf.Tensor:
    """(N,) values shaped to broadcast over (N, 28, 28) images."""
    return values[:, None, None]


def _restretch(images: tf.Tensor) -> tf.Tensor:
    """The images' ink stretched so that the brightest pixel is 255, as preparation does."""
    peak = tf.reduce_max(images, axis=(1, 2))
    return images * _per_image(tf.where(peak > 0, 255.0 / tf.maximum(peak, 1e-6), 1.0))


# Stroke width


def _stroke_width(images: tf.Tensor, augmentation: Augmentation, seed: tf.Tensor) -> tf.Tensor:
    """Chosen images' strokes dilated or eroded by a 3x3 cross, whole steps and a blended part.

    One step moves every edge one pixel, so a stroke gains or loses two pixels of width; a part
    of a step blends toward the next, an anti-aliased edge between.
    """
    chosen, strength = _draws(images, augmentation.probability, seed, signed=True)
    change = strength * augmentation.stroke_width
    change = tf.where(change < 0, change * THINNING_SHARE, change)
    steps = math.ceil(augmentation.stroke_width / 2)

    def change_width(images: tf.Tensor, change: tf.Tensor) -> tf.Tensor:
        thicker, thinner = [images], [images]
        for _ in range(steps):
            thicker.append(_dilate(thicker[-1]))
            thinner.append(-_dilate(-thinner[-1]))
        levels = thinner[:0:-1] + thicker  # from the thinnest to the thickest; `images` at index `steps`
        return _restretch(_mix_levels(levels, change / 2 + steps))

    return _on_chosen(images, chosen, change_width, change)


def _dilate(images: tf.Tensor) -> tf.Tensor:
    """Grey dilation by a 3x3 cross: the brightest of each pixel and its four neighbours, outside black."""
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1]])
    neighbours = (padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:])
    dilated = images
    for neighbour in neighbours:
        dilated = tf.maximum(dilated, neighbour)
    return dilated


def _mix_levels(levels: list[tf.Tensor], position: tf.Tensor) -> tf.Tensor:
    """Per image, `levels` (each (N, 28, 28)) interpolated at its fractional index `position` (N,)."""
    stacked = tf.stack(levels, axis=1)  # (N, levels, 28, 28)
    position = tf.clip_by_value(position, 0.0, len(levels) - 1.0)
    lower = tf.floor(position)
    upper = tf.minimum(lower + 1, len(levels) - 1)
    below = tf.gather(stacked, tf.cast(lower, tf.int32), batch_dims=1)
    above = tf.gather(stacked, tf.cast(upper, tf.int32), batch_dims=1)
    return below + _per_image(position - lower) * (above - below)


# Stretch, slant and elastic distortion: one resampling of each image


def _geometry(images: tf.Tensor, augmentation: Augmentation, seed: tf.Tensor) -> tf.Tensor:
    """Chosen images stretched, then slanted, then elastically distorted, in one bilinear resampling.

    Every output pixel is traced back to where it comes from in the input: through the slant,
    then the stretch (both about the centre of mass, which so stays where it was), then moved by
    the displacement field.
    """
    stretch_seed, slant_seed, elastic_seed, field_seed = _split(seed, 4)
    chosen = tf.zeros(tf.shape(images)[:1], tf.bool)
    strengths = []
    for name, step_seed, signed in (("stretch", stretch_seed, True), ("slant", slant_seed, True),
                                    ("elastic", elastic_seed, False)):
        picked, strength = _draws(images, augmentation.probability, step_seed, signed)
        if getattr(augmentation, name):
            chosen |= picked
        strengths.append(strength * getattr(augmentation, name))

    def warp(images: tf.Tensor, stretch: tf.Tensor, slant: tf.Tensor, elastic: tf.Tensor) -> tf.Tensor:
        centre_row, centre_column = (_per_image(centre) for centre in _centre_of_mass(images))
        grid = tf.range(IMAGE_SIDE, dtype=tf.float32)
        rows = tf.broadcast_to(grid[None, :, None], tf.shape(images))
        columns = tf.broadcast_to(grid[None, None, :], tf.shape(images))
        source_rows, source_columns = rows, columns
        if augmentation.slant:
            lean = _per_image(tf.tan(slant * (math.pi / 180)))
            source_columns = source_columns + lean * (rows - centre_row)  # a positive slant leans the top right
        if augmentation.stretch:
            scale_rows, scale_columns = (_per_image(scale) for scale in _stretch_scales(images, stretch))
            source_rows = centre_row + (source_rows - centre_row) / scale_rows
            source_columns = centre_column + (source_columns - centre_column) / scale_columns
        if augmentation.elastic:
            row_seed, column_seed = _split(field_seed, 2)
            count = tf.shape(images)[0]
            source_rows += _per_image(elastic) * _smooth_field(row_seed, count, augmentation.elastic_smoothness)
            source_columns += _per_image(elastic) * _smooth_field(column_seed, count, augmentation.elastic_smoothness)
        return _bilinear_sample(images, source_rows, source_columns)

    return _on_chosen(images, chosen, warp, *strengths)


def _centre_of_mass(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Each image's centre of mass (row, column); the image's centre for a blank one."""
    grid = tf.range(IMAGE_SIDE, dtype=tf.float32)
    total = tf.reduce_sum(images, axis=(1, 2))
    centre = tf.fill(tf.shape(total), IMAGE_SIDE / 2)
    row = tf.reduce_sum(tf.reduce_sum(images, axis=2) * grid, axis=1)
    column = tf.reduce_sum(tf.reduce_sum(images, axis=1) * grid, axis=1)
    return (tf.where(total > 0, row / tf.maximum(total, 1e-6), centre),
            tf.where(total > 0, column / tf.maximum(total, 1e-6), centre))


def _ink_extent(ink: tf.Tensor) -> tf.Tensor:
    """(N, 28) booleans → the span from the first True to the last, in pixels (28 when none)."""
    marks = tf.cast(ink, tf.int32)
    first = tf.argmax(marks, axis=1, output_type=tf.int32)
    last = IMAGE_SIDE - 1 - tf.argmax(tf.reverse(marks, axis=[1]), axis=1, output_type=tf.int32)
    return tf.cast(tf.where(tf.reduce_any(ink, axis=1), last - first + 1, IMAGE_SIDE), tf.float32)


def _stretch_scales(images: tf.Tensor, stretch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Row and column scales that stretch each digit's box toward a square, or squeeze it.

    A positive `stretch` raises the box's aspect ratio to the power 1 - stretch: at 1 the box is
    square, as a form's capture stretched to fill its box makes it (a 1 as wide as tall). A
    negative one squeezes the shorter side by up to half (at -1), as narrow writing does. The
    longer side keeps its length, as preparation fits it back to 20 pixels.
    """
    ink = images > 0
    width = _ink_extent(tf.reduce_any(ink, axis=1))
    height = _ink_extent(tf.reduce_any(ink, axis=2))
    aspect = tf.exp((1.0 - tf.maximum(stretch, 0.0)) * tf.math.log(width / height))
    squeeze = 1.0 + tf.minimum(stretch, 0.0) / 2
    aspect = tf.where(aspect <= 1, aspect * squeeze, aspect / squeeze)
    longer = tf.maximum(width, height)
    new_width = tf.where(aspect <= 1, longer * aspect, longer)
    new_height = tf.where(aspect <= 1, longer, longer / aspect)
    return new_height / height, new_width / width


def _smooth_field(seed: tf.Tensor, count: tf.Tensor, smoothness: float) -> tf.Tensor:
    """(N, 28, 28) random noise blurred by a Gaussian of sigma `smoothness`, standard deviation 1.

    The noise is drawn only every half sigma and spread over the pixels by the Gaussian: the
    same smooth field as blurring noise at every pixel, for a fraction of the random numbers.
    """
    spreading = tf.constant(_field_spreading(smoothness))
    points = spreading.shape[1]
    noise = tf.random.stateless_uniform(tf.stack([count, points, points]), seed, -1.0, 1.0)
    return _on_rows_and_columns(spreading, noise)


@functools.cache
def _field_spreading(smoothness: float) -> np.ndarray:
    """The (28, points) matrix that spreads noise drawn at points every half `smoothness`, out to
    one `smoothness` beyond the image, over the pixels, scaled so that the field it makes of
    uniform noise on [-1, 1] has a standard deviation of 1 at every pixel."""
    spacing = smoothness / 2
    points = np.arange(-smoothness, IMAGE_SIDE - 1 + smoothness + spacing, spacing)
    weights = np.exp(-0.5 * ((np.arange(IMAGE_SIDE)[:, None] - points[None, :]) / smoothness) ** 2)
    # A pixel's variance is 1/3 (the noise's) times the sum of its squared row weights times the
    # sum of its squared column weights: each sum is made the square root of 3.
    return (weights / np.sqrt((weights**2).sum(axis=1, keepdims=True) / np.sqrt(3))).astype(np.float32)


def _bilinear_sample(images: tf.Tensor, rows: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
    """`images` (N, 28, 28) read at fractional `rows`, `columns` (N, 28, 28): bilinear, 0 outside."""
    # A black border, one pixel before and two after, holds every position read from outside.
    padded = tf.pad(images, [[0, 0], [1, 2], [1, 2]])
    side = IMAGE_SIDE + 3
    rows = tf.clip_by_value(rows, -1.0, IMAGE_SIDE)
    columns = tf.clip_by_value(columns, -1.0, IMAGE_SIDE)
    top, left = tf.floor(rows), tf.floor(columns)
    down, right = rows - top, columns - left
    # Indices into all the padded images laid end to end: one flat gather is the fastest on CPUs.
    first_pixel = tf.range(tf.shape(images)[0])[:, None, None] * side * side
    corner = tf.cast((top + 1) * side + left + 1, tf.int32) + first_pixel
    top_left, top_right, bottom_left, bottom_right = tf.unstack(
        tf.gather(tf.reshape(padded, [-1]), tf.stack([corner, corner + 1, corner + side, corner + side + 1]))
    )
    upper = top_left + right * (top_right - top_left)
    lower = bottom_left + right * (bottom_right - bottom_left)
    return upper + down * (lower - upper)


# Blur


def _gaussian_matrices(sigma: tf.Tensor) -> tf.Tensor:
    """(N, 28, 28) matrices that blur a column of pixels by a Gaussian of each `sigma` (N,).

    Row r holds the weights of the pixels blurred into pixel r; ink blurred past the edge is
    lost, as with a zero-padded convolution. A sigma of 0 gives the identity.
    """
    grid = tf.range(IMAGE_SIDE, dtype=tf.float32)
    offsets = grid[:, None] - grid[None, :]
    every_offset = tf.range(-(IMAGE_SIDE - 1), IMAGE_SIDE, dtype=tf.float32)
    width = _per_image(tf.maximum(sigma, 1e-3))
    weights = tf.exp(-0.5 * (offsets / width) ** 2)
    total = tf.reduce_sum(tf.exp(-0.5 * (every_offset / width) ** 2), axis=2, keepdims=True)
    return weights / total


def _on_rows_and_columns(matrices: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
    """Images (N, H, W) mapped by (N, H', H) `matrices` down their columns and along their rows."""
    return tf.linalg.matmul(tf.linalg.matmul(matrices, images), matrices, transpose_b=True)


def _blur(images: tf.Tensor, augmentation: Augmentation, seed: tf.Tensor) -> tf.Tensor:
    """Chosen images blurred by a Gaussian of each one's own sigma."""
    chosen, strength = _draws(images, augmentation.probability, seed)

    def blur(images: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
        return _restretch(_on_rows_and_columns(_gaussian_matrices(sigma), images))

    return _on_chosen(images, chosen, blur, strength * augmentation.blur)


# Low resolution and binarisation: how a scanner or a form captures the digit


def _capture(images: tf.Tensor, augmentation: Augmentation, seed: tf.Tensor) -> tf.Tensor:
    """Chosen images shrunk to a random capture size (area averaging), binarised there when chosen
    for that, and enlarged back to 28x28 (bilinear), as preparing a small capture enlarges it."""
    resolution_seed, binarise_seed = _split(seed, 2)
    shrunk, strength = _draws(images, augmentation.probability, resolution_seed)
    binarised, level = _draws(images, augmentation.probability, binarise_seed, signed=True)
    # The image's side at capture, from the full 28 down to the smallest (28 too when off), uniformly.
    smallest = round(augmentation.low_resolution * IMAGE_SIDE / DIGIT_BOX) or IMAGE_SIDE
    side = tf.cast(tf.round(IMAGE_SIDE - strength * (IMAGE_SIDE - smallest)), tf.int32)
    threshold = 0.5 + level * augmentation.binarise
    chosen = tf.zeros_like(shrunk)
    if augmentation.low_resolution:
        chosen |= shrunk
    if augmentation.binarise:
        chosen |= binarised

    def capture(images: tf.Tensor, side: tf.Tensor, binarised: tf.Tensor, threshold: tf.Tensor) -> tf.Tensor:
        if augmentation.low_resolution:
            shrinking, enlarging = (tf.gather(table, side) for table in _resize_matrices())
            images = _on_rows_and_columns(shrinking, images)
        if augmentation.binarise:
            images = _binarise(images, binarised, threshold)
        if augmentation.low_resolution:
            images = _on_rows_and_columns(enlarging, images)
        return _restretch(images)

    return _on_chosen(images, chosen, capture, side, binarised, threshold)


@functools.cache
def _resize_matrices() -> tuple[np.ndarray, np.ndarray]:
    """For each side k up to 28, the matrix that shrinks 28 pixels to k by area averaging (in its
    first k rows) and the one that enlarges k pixels back to 28 bilinearly (in its first k
    columns), pixel centres aligned as in `tf.image.resize`; for 28 both are the identity."""
    shrinking = np.zeros((IMAGE_SIDE + 1, IMAGE_SIDE, IMAGE_SIDE), np.float32)
    enlarging = np.zeros((IMAGE_SIDE + 1, IMAGE_SIDE, IMAGE_SIDE), np.float32)
    pixels = np.arange(IMAGE_SIDE)
    for side in range(1, IMAGE_SIDE + 1):
        span = IMAGE_SIDE / side  # input pixels per captured pixel
        for captured in range(side):
            overlap = np.minimum(pixels + 1, (captured + 1) * span) - np.maximum(pixels, captured * span)
            shrinking[side, captured] = np.clip(overlap, 0, None) / span
        position = np.clip((pixels + 0.5) / span - 0.5, 0, side - 1)
        below = np.floor(position).astype(int)
        above = np.minimum(below + 1, side - 1)
        enlarging[side, pixels, below] += 1 - (position - below)
        enlarging[side, pixels, above] += position - below
    return shrinking, enlarging


def _binarise(images: tf.Tensor, chosen: tf.Tensor, threshold: tf.Tensor) -> tf.Tensor:
    """Chosen images set to 255 where at least `threshold` of their peak, 0 elsewhere."""
    peak = tf.reduce_max(images, axis=(1, 2))
    level = _per_image(threshold * peak)
    black_and_white = tf.where((images >= level) & (images > 0), 255.0, 0.0)
    return tf.where(_per_image(chosen), black_and_white, images)


# Faint ink


def _faint(images: tf.Tensor, augmentation: Augmentation, seed: tf.Tensor) -> tf.Tensor:
    """Chosen images' ink made uneven and grainy, as a pencil or a drying pen leaves it.

    The ink levels are raised to a random gamma and multiplied by a smooth random gain (the
    pressure along the stroke) and a fine grain. Stretched back to full strength, as preparation
    does, the strongest spot becomes the peak and the rest of the stroke fainter.
    """
    strength_seed, gamma_seed, pressure_seed, grain_seed = _split(seed, 4)
    chosen, strength = _draws(images, augmentation.probability, strength_seed)
    gamma = tf.random.stateless_uniform(tf.shape(strength), gamma_seed, -1.0, 1.0)

    def fade(images: tf.Tensor, strength: tf.Tensor, gamma: tf.Tensor) -> tf.Tensor:
        strength = _per_image(strength)
        count = tf.shape(images)[0]
        pressure = tf.exp(strength * PRESSURE * _smooth_field(pressure_seed, count, PRESSURE_SMOOTHNESS))
        grain = 1 + strength * GRAIN * tf.random.stateless_uniform(tf.shape(images), grain_seed, -1.0, 1.0)
        ink = (images / 255.0) ** tf.exp(strength * GAMMA * _per_image(gamma))
        return _restretch(ink * pressure * grain)

    return _on_chosen(images, chosen, fade, strength * augmentation.faint, gamma)
