"""The paper (or screen) under the ink: its level in a small crop, a smooth surface in a photo."""

from __future__ import annotations

import numpy as np

from digitlab.preparation.operations import median_of, resized

SMALL_SIDE = 32  # images narrower than this are crops or small scans: even lighting assumed


PAPER_BINS = 32  # grey levels told apart when looking for a small image's paper


def _densest_band(values: np.ndarray, share: float = 0.3) -> tuple[float, float]:
    """The narrowest range of levels holding `share` of the values."""
    ordered = np.sort(values)
    window = max(1, int(share * ordered.size))
    start = int(np.argmin(ordered[window - 1 :] - ordered[: ordered.size - window + 1]))
    return float(ordered[start]), float(ordered[start + window - 1])


def _fit_surface(
    design: np.ndarray, values: np.ndarray, usable: np.ndarray, inliers: np.ndarray
) -> tuple[np.ndarray, float]:
    """Least squares fitted to `inliers`, then refitted to the values near the surface; the
    coefficients and the spread (robust standard deviation) of the values around it."""
    terms = design.shape[1]
    coefficients = np.zeros(terms, dtype=np.float32)
    coefficients[0] = np.median(values[usable])
    spread = 0.01
    for _ in range(6):
        if inliers.sum() < 2 * terms:
            break
        chosen = design[inliers]
        normal = chosen.T @ chosen + 1e-6 * np.eye(terms, dtype=np.float32)
        coefficients = np.linalg.solve(normal, chosen.T @ values[inliers])
        residual = values - design @ coefficients
        spread = max(1.4826 * float(np.median(np.abs(residual[inliers]))), 0.01)
        kept = usable & (np.abs(residual) <= 2.5 * spread)
        if np.array_equal(kept, inliers):
            break
        inliers = kept
    return coefficients, spread


def _paper_level(grey: np.ndarray) -> float:
    """The paper's grey level in a small crop or scan: the most common level, counted over the
    whole image and, with the same weight, over its rim. Bold ink can cover half of a binary
    scan stretched to fill its box, but even a digit touching every edge leaves most of the
    rim to the paper."""
    bins = np.minimum((grey * PAPER_BINS).astype(np.int32), PAPER_BINS - 1)
    rim = np.concatenate([bins[0], bins[-1], bins[1:-1, 0], bins[1:-1, -1]])
    counts = (np.bincount(bins.ravel(), minlength=PAPER_BINS) / bins.size
              + np.bincount(rim, minlength=PAPER_BINS) / rim.size)
    mode = int(np.argmax(counts))
    return median_of(grey[bins == mode])


def paper_surface(grey: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """The paper (or screen) under the ink: a quadratic surface fitted robustly to the grey levels.

    The fit runs on a small copy of the image. It starts from the densest band of levels and
    keeps the pixels near its surface, so ink of either polarity is left out. When most of the
    middle of the image is off that surface and mostly on one grown from the middle's densest
    band, which also covers much of the image, that one is taken: a dark table filling much of
    the frame around the paper. A smooth surface takes in gradients and vignetting of the
    lighting but never follows a stroke. Only the `known` pixels, when given, are fitted; the
    surface covers the whole image.
    """
    height, width = grey.shape
    if min(height, width) < SMALL_SIDE and known is None:
        return np.full(grey.shape, _paper_level(grey), dtype=np.float32)
    grid_side = 48
    shrink = min(1.0, grid_side / max(height, width))
    small = resized(grey, max(1, round(width * shrink)), max(1, round(height * shrink)))

    def axis(count: int) -> np.ndarray:
        return ((np.arange(count) + 0.5) / count * 2 - 1).astype(np.float32)

    # A plane with curvature: 1, x, y, x², xy, y²; only a constant for small crops and scans,
    # where a curved surface would bend to fit the ink and lighting cannot vary much.
    terms = 1 if min(height, width) < SMALL_SIDE else 6
    y, x = np.meshgrid(axis(small.shape[0]), axis(small.shape[1]), indexing="ij")
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y][:terms], axis=-1).reshape(-1, terms)
    values = small.ravel()
    usable = np.ones(values.shape, dtype=bool)
    if known is not None:
        usable = resized(known.astype(np.float32), small.shape[1], small.shape[0]).ravel() > 0.99
        if not usable.any():
            return np.full(grey.shape, float(np.median(grey)), dtype=np.float32)
    rows, columns = small.shape
    middle = np.zeros(small.shape, dtype=bool)
    middle[rows // 4 : rows - rows // 4, columns // 4 : columns - columns // 4] = True
    middle = middle.ravel() & usable
    def fitted(band: tuple[float, float]) -> tuple[np.ndarray, float, float]:
        """The surface grown from a band of levels, and the shares of the middle and of the
        whole image lying on it."""
        low, high = band
        start = usable & (values >= low) & (values <= high)
        coefficients, spread = _fit_surface(design, values, usable, start)
        near = np.abs(values - design @ coefficients) <= max(2.5 * spread, 0.05)
        return coefficients, float(near[middle].mean()) if middle.any() else 1.0, float(near[usable].mean())

    coefficients, share, _ = fitted(_densest_band(values[usable]))
    if share < 0.5 and middle.sum() >= 10:
        # Most of the middle is off the surface: a dark table may fill the frame around the
        # paper (or a bold digit fill the middle, which then covers little of the whole).
        middle_coefficients, middle_share, whole_share = fitted(_densest_band(values[middle]))
        if middle_share > 0.7 and whole_share > 0.4:
            coefficients = middle_coefficients
    best = np.zeros(6, dtype=np.float32)
    best[:terms] = coefficients
    constant, along_x, along_y, x_squared, x_times_y, y_squared = best
    x, y = axis(width)[None, :], axis(height)[:, None]
    surface = constant + along_x * x + along_y * y + x_squared * x * x + x_times_y * x * y + y_squared * y * y
    return np.clip(surface, 0.0, 1.0).astype(np.float32)
