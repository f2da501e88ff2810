"""Finding the ink: polarity, contrast against the paper, noise, specks, ruled lines and boxes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from digitlab.preparation.opening import as_grey
from digitlab.preparation.operations import (
    connected_pieces,
    dilate_mask,
    gaussian_blur,
    ink_bounds,
    median_of,
    noise_sigma,
    percentile_of,
    pieces_mask,
    stroke_width,
)
from digitlab.preparation.paper import SMALL_SIDE, paper_surface

if TYPE_CHECKING:
    from PIL import Image



# Ink must stand out from the paper by this share of the paper's brightness, and by this many
# times the noise, before anything is read as ink: below it an image is blank.
MIN_CONTRAST = 0.1


NOISE_SIGMAS = 5.0


FLOOR_SIGMAS = 3.0  # ink levels start this many noise sigmas above the paper


FULL_INK_PERCENTILE = 90  # of the clearly-ink pixels: the level stretched to full ink


LINE_SPAN = 0.9  # ruled lines run across this share of the image...


LINE_OVERHANG = 0.1  # ...past the digits by this share of it at one end, and not short of them...


LINE_SHORTFALL = 0.02  # ...by more than this share at the other (a digit touching the edge)...


LINE_WIDTH = 0.75  # ...and no thicker than this share of the handwriting's strokes


def _paper_noise(contrast: np.ndarray) -> float:
    """The noise's standard deviation in a contrast map (paper at 0, ink above it).

    Ink only raises the contrast, so the values at or below 0 are paper and their spread is
    the noise's (the median of a half-normal's magnitude is 0.6745 sigma), however much of a
    tight crop the ink covers.
    """
    sample = contrast.ravel()
    if sample.size > 40_000:
        sample = sample[:: sample.size // 40_000]
    paper = sample[sample <= 0]
    if paper.size < 0.05 * sample.size:
        return noise_sigma(sample)
    return min(median_of(-paper) / 0.6745, noise_sigma(sample))


def _ink_is_dark(grey: np.ndarray, background: np.ndarray) -> bool:
    """Whether the ink is darker than the background: where the strong differences lie."""
    residual = grey - background
    margin = FLOOR_SIGMAS * max(noise_sigma(residual), 1 / 255)
    dark = np.clip(-residual - margin, 0, None).sum()
    light = np.clip(residual - margin, 0, None).sum()
    if dark == light:  # nothing stands out: blank, call it paper
        return float(np.median(background)) >= 0.5
    return bool(dark > light)


def to_grey_ink(image: Image.Image | np.ndarray) -> np.ndarray:
    """The ink of a digit image: float32 (H, W) in [0, 1] where 1 is full ink and 0 background.

    Either polarity is taken (dark ink on light paper is inverted). The background is fitted as
    a smooth surface and divided out (dark ink) or subtracted (light ink), so uneven lighting
    goes. Pixels that stand out clearly from the noise mark the strokes; the ink levels near
    them are stretched so that the stroke core is full ink, keeping anti-aliased edges grey,
    and everything else is set to 0. Specks too small to be a stroke are removed, and so are
    ruled lines and printed boxes (see `_ruled_lines`). A blank or noise-only image gives all
    zeros.
    """
    grey = as_grey(image)
    height, width = grey.shape
    background = paper_surface(grey)
    if _ink_is_dark(grey, background):
        contrast = 1.0 - grey / np.maximum(background, 0.05)
    else:
        contrast = (grey - background) / np.maximum(1.0 - background, 0.05)
    contrast = contrast.astype(np.float32)
    # Photos are smoothed a little before the ink is judged; small clean images are left alone.
    smoothed = gaussian_blur(contrast, max(height, width) / 700)
    # A small crop's paper is one flat level, so its noise shows on the paper's side alone; in
    # a larger image the fitted surface only approaches the paper, and the spread about the
    # median is the safer measure.
    noise = _paper_noise(smoothed) if min(height, width) < SMALL_SIDE else noise_sigma(smoothed)
    clear = max(NOISE_SIGMAS * noise, MIN_CONTRAST)
    clearly_ink = smoothed > clear
    nothing = np.zeros(grey.shape, dtype=np.float32)
    if clearly_ink.sum() < 3:
        return nothing
    full = percentile_of(smoothed[clearly_ink], FULL_INK_PERCENTILE)
    floor = FLOOR_SIGMAS * noise
    # Ruled lines and printed boxes are found whole, faint parts too, and are no ink.
    smoothed = np.where(_ruled_lines(smoothed > max(floor, 0.2 * clear)), 0.0, smoothed)
    strong = smoothed >= max(0.5 * full, clear)
    pieces = connected_pieces(strong)
    # Specks: the size of a stroke's dot on a page of this size, or a lone pixel.
    min_speck = max(2.0, (max(height, width) / 250) ** 2)
    big = np.flatnonzero(pieces.areas >= min_speck) + 1
    if big.size == 0:
        return nothing
    strong = pieces_mask(pieces, big - 1)
    # The ink is what lies near the strong strokes: their anti-aliased edges, not long faint lines.
    reach = min(int(math.ceil(stroke_width(strong) / 2)) + 1, max(2, max(height, width) // 40))
    kept = dilate_mask(strong, reach) & (smoothed > floor)
    levels = np.clip((smoothed - floor) / max(full - floor, 1e-6), 0.0, 1.0)
    return np.where(kept, levels, 0.0).astype(np.float32)


def _runs(mask: np.ndarray, axis: int, gap: int, length: int) -> np.ndarray:
    """The pixels of `mask` in straight runs along `axis` at least `length` long once gaps up to
    `gap` are closed; a run may continue past the image's edge. Running minima and maxima
    (closing, then opening) take the same time whatever the lengths."""
    gap, length = gap | 1, length | 1  # odd windows: centred, so opening and closing are exact
    values = mask.astype(np.uint8)
    closed = ndimage.maximum_filter1d(values, gap, axis=axis, mode="constant", cval=0)
    closed = ndimage.minimum_filter1d(closed, gap, axis=axis, mode="constant", cval=1)
    opened = ndimage.minimum_filter1d(closed, length, axis=axis, mode="constant", cval=1)
    opened = ndimage.maximum_filter1d(opened, length, axis=axis, mode="constant", cval=0)
    return opened.astype(bool) & mask


def _ruled_lines(mask: np.ndarray) -> np.ndarray:
    """The pixels of ruled lines and printed boxes: straight runs across nearly the whole image,
    thinner than the handwriting's strokes, that reach as far as the rest of the ink at both
    ends and well past it at one, or that stand along the image's rim with another such line
    (a box). A digit's own bar, such as a tight 7's, is as thick as its other strokes and has
    no partner along the opposite rim."""
    height, width = mask.shape
    lines = np.zeros_like(mask)
    if min(height, width) < SMALL_SIDE:
        return lines
    # Faint printed lines can come out dashed: gaps of a few pixels are closed first (wider
    # ones would bridge the digits of a number written across the image).
    gap = max(3, max(height, width) // 40)
    across = _runs(mask, 1, gap, math.ceil(LINE_SPAN * width))
    down = _runs(mask, 0, gap, math.ceil(LINE_SPAN * height))
    rest = mask & ~(across | down)
    bounds = ink_bounds(rest)
    if bounds is None:
        return lines
    rest_pieces = connected_pieces(rest)
    thickest = max(LINE_WIDTH * stroke_width(pieces_mask(rest_pieces, [int(np.argmax(rest_pieces.areas))])), 2.0)
    rows, columns = bounds
    reaching, along_rim, rim_reaching = [], [], 0
    for runs, axis, (start, stop) in ((across, 1, (columns.start, columns.stop)), (down, 0, (rows.start, rows.stop))):
        size, other_size = mask.shape[axis], mask.shape[1 - axis]
        labels, _ = ndimage.label(runs)
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            line = labels[box] == index
            if line.sum() / (box[axis].stop - box[axis].start) > thickest:
                continue
            before, after = start - box[axis].start, box[axis].stop - stop
            at_rim = (box[1 - axis].start < LINE_OVERHANG * other_size
                      or box[1 - axis].stop > (1 - LINE_OVERHANG) * other_size)
            if min(before, after) >= -LINE_SHORTFALL * size and max(before, after) >= LINE_OVERHANG * size:
                reaching.append((box, line))
                rim_reaching += at_rim
            elif at_rim:
                along_rim.append((box, line))
    for box, line in reaching + (along_rim if len(along_rim) + rim_reaching >= 2 else []):
        lines[box] |= line
    return lines
