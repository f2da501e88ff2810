"""Reading files that may or may not be gzip-compressed, judged by content, not by name."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from pathlib import Path

from digitlab.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if it is gzip; a clear error if it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, expected a file") from None
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror or error}") from None
    if not data:
        raise DataError(path, "the file is empty")
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        data = gzip.decompress(data)
    except EOFError:
        raise DataError(path, "truncated gzip file: it ends before its compressed data does") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise DataError(path, f"damaged gzip file ({error})") from None
    if not data:
        raise DataError(path, "the file is empty once decompressed")
    return data


def first_bytes(path: Path, count: int, error_type: Callable[[Path, str], Exception] = DataError) -> bytes:
    """The first `count` bytes of a file; an error of `error_type(path, problem)` if it is empty or unreadable."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(count)
    except OSError as error:
        raise error_type(path, f"cannot read: {error.strerror or error}") from None
    if not start:
        raise error_type(path, "the file is empty")
    return start
