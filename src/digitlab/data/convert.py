"""Converting digit data between formats: IDX, Kaggle CSV, npz and PNG folders."""

from __future__ import annotations

from pathlib import Path

from digitlab.data.dataset import Dataset
from digitlab.data.formats import idx, image_folder, kaggle_csv, npz
from digitlab.errors import DigitlabError
from digitlab.outputs import check_new, write_folder

FORMATS = ("idx", "csv", "npz", "png")
_IDX_PREFIX = {"train": "train", "test": "t10k"}


def guess_format(destination: Path) -> str:
    name = destination.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith(".npz"):
        return "npz"
    raise DigitlabError(
        f"cannot tell the format of {destination} from its name; choose one with --to ({', '.join(FORMATS)})"
    )


def idx_file_names(part: str) -> tuple[str, str]:
    """Standard MNIST file names for a part: ('train-images-idx3-ubyte.gz', 'train-labels-...')."""
    prefix = _IDX_PREFIX.get(part, part)
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


def _write_idx(folder: Path, parts: dict[str, Dataset]) -> None:
    for part, dataset in parts.items():
        images_name, labels_name = idx_file_names(part)
        idx.write_images(folder / images_name, dataset.images)
        if dataset.labels is not None:
            idx.write_labels(folder / labels_name, dataset.labels)


def convert(
    parts: dict[str, Dataset],
    destination: str | Path,
    to: str | None = None,
    force: bool = False,
    kaggle: bool = False,
) -> Path:
    """Write `parts` to `destination` in format `to` (guessed from the name when None).

    A single part becomes a single file (csv, npz) or folder (png, idx); several parts become a
    folder with one file or subfolder each (npz keeps them in one file). With `kaggle`, a test
    part is written without labels, as Kaggle's test.csv is.
    """
    destination = Path(destination)
    to = to or guess_format(destination)
    if to not in FORMATS:
        raise DigitlabError(f"unknown format {to!r}; choose one of {', '.join(FORMATS)}")
    check_new(destination, force)
    if to == "npz":
        return npz.write(destination, parts, force)
    if to == "png":
        return image_folder.write(destination, parts, force)
    if to == "idx":
        return write_folder(destination, lambda folder: _write_idx(folder, parts), force)
    with_labels = {part: not (kaggle and part == "test") for part in parts}
    if len(parts) == 1 and destination.name.lower().endswith((".csv", ".csv.gz")):
        part, dataset = next(iter(parts.items()))
        return kaggle_csv.write(destination, dataset, force, with_labels[part])

    def write_csv_files(folder: Path) -> None:
        for part, dataset in parts.items():
            kaggle_csv.write(folder / f"{part}.csv", dataset, with_labels=with_labels[part])

    return write_folder(destination, write_csv_files, force)
