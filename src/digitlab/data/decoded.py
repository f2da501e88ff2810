"""Values decoded from gzip files, kept in the cache folder as uint8 .npy files and memory-mapped.

Inflating MNIST's gzip files is most of the time a load takes; read back from the cache, the
values cost only the pages used. An entry is named after its source's path and version: size,
mtime, ctime, inode and the gzip trailer (CRC-32 and length of the inflated data), so a changed
file never finds an old entry, and a new entry replaces the old one. Entries are written
atomically, and only once the source decoded without error; a missing, truncated or mismatched
entry means decoding the source again (and rewriting the entry), and a cache folder that cannot
be written means decoding every time. Files that are not gzip are not copied: reading them is
already as fast as reading an entry.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from digitlab.data.compressed import GZIP_MAGIC
from digitlab.data.named import cache_root
from digitlab.errors import DataError, DigitlabError
from digitlab.outputs import write_file

FOLDER = "decoded"
_LAYOUT = 1  # part of every entry's name: raise it when what an entry holds changes


def _digest(*parts: object) -> str:
    return hashlib.sha256(" ".join(map(str, parts)).encode()).hexdigest()[:16]


def _entry(path: Path) -> Path | None:
    """The cache file for this version of gzip file `path`; None for a file that is not gzip or
    cannot be read (decoding it gives the error)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(2) != GZIP_MAGIC:
                return None
            handle.seek(-8, os.SEEK_END)
            trailer = handle.read(8)
            status = os.fstat(handle.fileno())
        place = _digest(path.resolve())
    except OSError:
        return None
    version = _digest(_LAYOUT, status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino, trailer.hex())
    return cache_root() / FOLDER / f"{path.name[:80]}.{place}.{version}.npy"


def _load(entry: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The entry's values, memory-mapped and read-only; None if it is missing, damaged or not of
    `shape`. A plain ndarray over the np.memmap: arrays made from it are not memmaps."""
    try:
        values = np.load(entry, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return np.asarray(values) if values.dtype == np.uint8 and values.shape == shape else None


def _store(entry: Path, values: np.ndarray) -> None:
    """Write the entry and remove those of the source's earlier versions; a cache that cannot be
    written is no error, the values are decoded again next time."""
    if not values.size:  # an empty file cannot be memory-mapped, and costs nothing to decode
        return
    try:
        write_file(entry, lambda temporary: np.save(temporary, values, allow_pickle=False), force=True)
        earlier = entry.name.rsplit(".", 2)[0] + "."  # the source's name and place
        for other in entry.parent.iterdir():
            if other.name.startswith(earlier) and other.name != entry.name:
                other.unlink(missing_ok=True)
    except (DigitlabError, OSError):
        return


def cached(path: Path, shape: tuple[int, ...], decode: Callable[[], np.ndarray],
           check: Callable[[np.ndarray], None] = lambda values: None) -> np.ndarray:
    """uint8 values of `shape` decoded from file `path`: memory-mapped from the cache when it
    holds this version of the file, else `decode()`d and kept. `check(values)` raises a DataError
    for values that must not be used: the source's error stands, a cached entry is decoded again."""
    entry = _entry(path)  # named before decoding: a file changed meanwhile goes under a name no read asks for
    if entry is not None:
        values = _load(entry, shape)
        if values is not None:
            try:
                check(values)
                return values
            except DataError:
                pass
    values = decode()
    check(values)
    if entry is not None:
        _store(entry, values)
    return values
