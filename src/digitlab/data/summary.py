"""Figures that describe a dataset: size, class balance, pixel statistics."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from digitlab.data.dataset import Dataset


@dataclass(frozen=True)
class Summary:
    name: str
    origin: str
    images: int
    labelled: bool
    class_counts: list[int] | None
    pixel_mean: float
    pixel_std: float
    pixel_min: int
    pixel_max: int
    ink_fraction: float  # share of pixels that are not background (> 0)

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(dataset: Dataset) -> Summary:
    pixels = dataset.images
    empty = pixels.size == 0
    return Summary(
        name=dataset.name,
        origin=dataset.origin,
        images=len(dataset),
        labelled=dataset.is_labelled,
        class_counts=dataset.class_counts().tolist() if dataset.is_labelled else None,
        pixel_mean=0.0 if empty else float(pixels.mean(dtype=np.float64)),
        pixel_std=0.0 if empty else float(pixels.std(dtype=np.float64)),
        pixel_min=0 if empty else int(pixels.min()),
        pixel_max=0 if empty else int(pixels.max()),
        ink_fraction=0.0 if empty else float(np.count_nonzero(pixels) / pixels.size),
    )
