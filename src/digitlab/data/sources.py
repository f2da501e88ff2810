"""Turning a source (a dataset name, a file or a folder) into datasets by part name.

A source may hold several parts: MNIST has "train" and "test". `SOURCE:part` picks one.
"""

from __future__ import annotations

import re
from pathlib import Path

from digitlab.data.compressed import first_bytes
from digitlab.data.dataset import Dataset
from digitlab.data.formats import idx, image_folder, kaggle_csv, npz
from digitlab.data.named import NAMED_DATASETS, locate
from digitlab.errors import DataError

_TEST_NAME = re.compile(r"test|t10k", re.IGNORECASE)
_PART_FOLDERS = ("train", "validation", "test")
_IMAGES_NAME = re.compile(r"images|imgs|idx3", re.IGNORECASE)


def part_name_for(path: Path) -> str:
    """'test' for files named like test sets (test.csv, t10k-...), else 'train'."""
    return "test" if _TEST_NAME.search(path.name) else "train"


def _pair_idx_files(folder: Path, files: list[Path], unreadable: list[Path] = ()) -> dict[str, Dataset]:
    """The IDX files of a folder paired into parts; `unreadable` are the folder's other files, one
    of which may be the images file of lone labels, with a damaged header."""
    by_part: dict[str, dict[str, Path]] = {}
    for path in files:
        kind = idx.kind_of(path)
        if kind is None:
            continue
        slot = by_part.setdefault(part_name_for(path), {})
        if kind in slot:
            raise DataError(folder, f"two IDX {kind} files for {part_name_for(path)}: "
                                    f"{slot[kind].name} and {path.name}")
        slot[kind] = path
    parts = {}
    for part in sorted(by_part, key=lambda name: name != "train"):
        files_of_part = by_part[part]
        if "images" not in files_of_part:
            for path in unreadable:  # an images file that is damaged: its own error names it
                if part_name_for(path) == part and _IMAGES_NAME.search(path.name):
                    idx.read_images(path)
            raise DataError(folder, f"IDX labels {files_of_part['labels'].name} have no images file beside them")
        parts[part] = _idx_dataset(files_of_part["images"], files_of_part.get("labels"), part)
    return parts


def _idx_dataset(images_path: Path, labels_path: Path | None, part: str) -> Dataset:
    images = idx.read_images(images_path)
    labels = None
    if labels_path is not None:
        labels = idx.read_labels(labels_path)
        if len(labels) != len(images):
            raise DataError(
                labels_path,
                f"{len(labels)} labels but {images_path.name} has {len(images)} images",
            )
    return Dataset(images, labels, name=part, origin=str(images_path))


def _labels_beside(images_path: Path) -> Path | None:
    name = images_path.name
    for images_word, labels_word in (("images-idx3", "labels-idx1"), ("images", "labels"), ("imgs", "labels")):
        if images_word in name:
            candidate = images_path.with_name(name.replace(images_word, labels_word))
            if candidate.is_file() and idx.kind_of(candidate) == "labels":
                return candidate
    return None


def _read_folder(folder: Path) -> dict[str, Dataset]:
    entries = sorted(entry for entry in folder.iterdir() if not entry.name.startswith("."))
    files = [entry for entry in entries if entry.is_file()]
    idx_files = [path for path in files if idx.kind_of(path)]
    if idx_files:
        return _pair_idx_files(folder, idx_files, unreadable=[path for path in files if path not in idx_files])
    csv_files = [path for path in files if path.name.endswith((".csv", ".csv.gz"))]
    kaggle_files = [path for path in csv_files if path.name.split(".")[0] in _PART_FOLDERS]
    if kaggle_files:
        kaggle_files.sort(key=lambda path: part_name_for(path) != "train")
        return {part_name_for(path): _read_file(path)[part_name_for(path)] for path in kaggle_files}
    part_folders = [entry for entry in entries if entry.is_dir() and entry.name in _PART_FOLDERS]
    if part_folders:
        part_folders.sort(key=lambda entry: _PART_FOLDERS.index(entry.name))
        return {entry.name: image_folder.read_folder(entry, name=entry.name) for entry in part_folders}
    if any(entry.is_dir() for entry in entries) or any(image_folder.is_image_file(path) for path in files):
        return {part_name_for(folder): image_folder.read_folder(folder)}
    raise DataError(
        folder,
        "no digit data found: expected IDX files, train.csv/test.csv, label folders 0..9 or images",
    )


def _read_file(path: Path) -> dict[str, Dataset]:
    start = first_bytes(path, 4)
    name = path.name.lower()
    part = part_name_for(path)
    if name.endswith((".csv", ".csv.gz")):
        return {part: kaggle_csv.read(path)}
    if name.endswith(".npz") or start.startswith(b"PK"):
        return npz.read(path)
    if path.suffix.lower() in image_folder.IMAGE_SUFFIXES:
        return {part: image_folder.read_file(path)}
    kind = idx.kind_of(path)
    if kind == "images":
        return {part: _idx_dataset(path, _labels_beside(path), part)}
    if kind == "labels":
        raise DataError(path, "is an IDX labels file; give the images file (or the folder holding both)")
    if "ubyte" in name or name.endswith((".idx", ".gz")):
        idx.read_images(path)  # raises the precise IDX error
    if start[:1] in (b"l", b"p", b'"'):
        return {part: kaggle_csv.read(path)}
    raise DataError(
        path, "unknown format: expected IDX (.gz), .npz, Kaggle .csv or an image file"
    )


def split_part(source: str) -> tuple[str, str | None]:
    """'mnist:test' -> ('mnist', 'test'), unless the whole string is an existing path."""
    head, separator, tail = source.rpartition(":")
    if separator and head and re.fullmatch(r"\w+", tail) and not Path(source).exists():
        return head, tail
    return source, None


def load_parts(source: str | Path, offline: bool = False) -> dict[str, Dataset]:
    """Every part of a source, by part name ("train", "test", ...).

    A source is a dataset name ("mnist"), an IDX file or folder, a Keras-style .npz, a Kaggle
    train.csv / test.csv (or a folder holding them), an image folder or one image file.
    """
    text, part = split_part(str(source))
    parts = _load_all(text, offline)
    if part is None:
        return parts
    if part not in parts:
        raise DataError(text, f"has no part {part!r}; its parts are {', '.join(parts)}")
    return {part: parts[part]}


def _load_all(text: str, offline: bool) -> dict[str, Dataset]:
    if text.lower() in NAMED_DATASETS:
        paths = locate(text.lower(), offline=offline)
        folder = next(iter(paths.values())).parent
        parts = _pair_idx_files(folder, list(paths.values()))
        return {part: _renamed(dataset, f"{text.lower()}-{part}") for part, dataset in parts.items()}
    path = Path(text).expanduser()
    if not path.exists():
        blocker = next((parent for parent in path.parents if parent.is_file()), None)
        if blocker is not None:
            raise DataError(path, f"no such file or folder: {blocker} is a file, not a folder")
        known = ", ".join(NAMED_DATASETS)
        raise DataError(path, f"no such file or folder (dataset names are: {known})")
    parts = _read_folder(path) if path.is_dir() else _read_file(path)
    return {part: _renamed(dataset, f"{path.name}-{part}" if len(parts) > 1 else dataset.name)
            for part, dataset in parts.items()}


def _renamed(dataset: Dataset, name: str) -> Dataset:
    return Dataset(dataset.images, dataset.labels, name=name, origin=dataset.origin)


def load(source: str | Path, part: str | None = None, offline: bool = False) -> Dataset:
    """One dataset from a source; `part` (or `SOURCE:part`) picks train/test, default train.

    >>> train = digitlab.load("mnist")          # 60,000 labelled images
    >>> test = digitlab.load("mnist:test")      # 10,000
    >>> kaggle = digitlab.load("train.csv")
    """
    parts = load_parts(source if part is None else f"{source}:{part}", offline=offline)
    if len(parts) == 1:
        return next(iter(parts.values()))
    return parts["train"] if "train" in parts else next(iter(parts.values()))
