"""Named datasets ("mnist"): found in DIGITLAB_DATA, then the user cache, else downloaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from digitlab.data.download import DownloadError, download, mirrors_from_environment, sha256_of
from digitlab.errors import DataError, DataNotFoundError


@dataclass(frozen=True)
class DataFile:
    name: str  # as served, gzipped
    sha256_gzipped: str
    sha256_raw: str  # of the decompressed file, for users who unpacked it


@dataclass(frozen=True)
class NamedDataset:
    name: str
    files: tuple[DataFile, ...]
    mirrors: tuple[str, ...]


# Checksums of the canonical files published by LeCun, Cortes and Burges.
MNIST = NamedDataset(
    name="mnist",
    files=(
        DataFile("train-images-idx3-ubyte.gz",
                 "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                 "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        DataFile("train-labels-idx1-ubyte.gz",
                 "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                 "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        DataFile("t10k-images-idx3-ubyte.gz",
                 "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                 "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        DataFile("t10k-labels-idx1-ubyte.gz",
                 "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                 "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://yann.lecun.com/exdb/mnist/",
    ),
)

NAMED_DATASETS = {MNIST.name: MNIST}


def cache_root() -> Path:
    """Where downloaded datasets are kept: DIGITLAB_CACHE, else the user's cache folder."""
    configured = os.environ.get("DIGITLAB_CACHE")
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("digitlab")


def offline_from_environment() -> bool:
    return os.environ.get("DIGITLAB_OFFLINE", "").lower() in ("1", "true", "yes")


def _candidate_folders(dataset: NamedDataset) -> list[Path]:
    folders = []
    configured = os.environ.get("DIGITLAB_DATA")
    if configured:
        base = Path(configured).expanduser()
        folders += [base, base / dataset.name]
    folders.append(cache_root() / dataset.name)
    return folders


def _present(folder: Path, data_file: DataFile) -> tuple[Path, str] | None:
    """The file (gzipped or unpacked) and its expected checksum, if it is in `folder`."""
    gzipped = folder / data_file.name
    if gzipped.is_file():
        return gzipped, data_file.sha256_gzipped
    unpacked = folder / data_file.name.removesuffix(".gz")
    if unpacked.is_file():
        return unpacked, data_file.sha256_raw
    return None


def _verified(path: Path, expected: str) -> Path:
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(
            path,
            f"checksum mismatch (sha256 {actual}, expected {expected}): the file is damaged or "
            "not the original; delete it so digitlab can fetch a fresh copy, or replace it",
        )
    return path


def _missing_message(dataset: NamedDataset, reason: str) -> str:
    names = ", ".join(data_file.name for data_file in dataset.files)
    places = " or ".join(str(folder) for folder in _candidate_folders(dataset))
    return (
        f"dataset {dataset.name!r} not found: {reason}. Put the files {names} "
        f"(gzipped or not) into {places}, or set DIGITLAB_DATA to the folder that holds them"
    )


def locate(name: str, offline: bool = False) -> dict[str, Path]:
    """Paths of the named dataset's verified files, downloading missing ones unless offline."""
    dataset = NAMED_DATASETS[name]
    offline = offline or offline_from_environment()
    for folder in _candidate_folders(dataset):
        found = [_present(folder, data_file) for data_file in dataset.files]
        if all(found):
            return {data_file.name: _verified(*entry) for data_file, entry in zip(dataset.files, found)}
    if offline:
        raise DataNotFoundError(_missing_message(dataset, "offline, so nothing is downloaded"))
    target = cache_root() / dataset.name
    paths = {}
    for data_file in dataset.files:
        present = _present(target, data_file)
        if present is not None and sha256_of(present[0]) == present[1]:
            paths[data_file.name] = present[0]
            continue
        urls = [base + data_file.name for base in mirrors_from_environment(list(dataset.mirrors))]
        try:
            paths[data_file.name] = download(urls, target / data_file.name, data_file.sha256_gzipped)
        except DownloadError as error:
            raise DataNotFoundError(_missing_message(dataset, str(error))) from None
    return paths
