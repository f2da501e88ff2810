"""Seeded, stratified validation splits."""

from __future__ import annotations

import numpy as np


def validation_count(total: int, validation: float | int) -> int:
    """How many of `total` images a validation size (fraction or count) stands for."""
    if isinstance(validation, bool) or not isinstance(validation, (int, float, np.number)):
        raise ValueError(f"validation size must be a fraction or a count, got {validation!r}")
    if isinstance(validation, (float, np.floating)):
        if not 0.0 < validation < 1.0:
            raise ValueError(f"validation fraction must be between 0 and 1, got {validation}")
        count = round(total * float(validation))
    else:
        count = int(validation)
    if not 0 < count < total:
        raise ValueError(
            f"validation size {validation} gives {count} of {total} images; "
            "it must leave at least one image on each side"
        )
    return count


ROLES = ("train", "validation")


def split_names(name: str) -> tuple[str, str]:
    """The names of a dataset's training and validation splits: its name with the role in place
    of a role it already ends in, so a split of a split is not named twice."""
    base = name
    while base.endswith(tuple(f"-{role}" for role in ROLES)):
        base = base.rsplit("-", 1)[0]
    return f"{base}-train", f"{base}-validation"


def validation_indices(
    total: int, validation: float | int, labels: np.ndarray | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) index arrays; stratified by `labels` when given."""
    count = validation_count(total, validation)
    generator = np.random.default_rng(seed)
    if labels is None:
        chosen = generator.choice(total, size=count, replace=False)
    else:
        chosen = _stratified_choice(labels, count, generator)
    mask = np.zeros(total, dtype=bool)
    mask[chosen] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _stratified_choice(
    labels: np.ndarray, count: int, generator: np.random.Generator
) -> np.ndarray:
    classes, class_sizes = np.unique(labels, return_counts=True)
    # Largest-remainder rounding gives each class its share and the exact total.
    exact = class_sizes * count / len(labels)
    per_class = np.floor(exact).astype(int)
    shortfall = count - per_class.sum()
    per_class[np.argsort(-(exact - per_class), kind="stable")[:shortfall]] += 1
    chosen = [
        generator.choice(np.flatnonzero(labels == digit), size=size, replace=False)
        for digit, size in zip(classes, per_class)
    ]
    return np.concatenate(chosen)
