"""Reading files that may or may not be gzip-compressed, judged by content, not by name."""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from digitlab.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"


@contextlib.contextmanager
def reading_errors(path: Path, expected: str = "a file") -> Iterator[None]:
    """What can go wrong while a file (gzip or not) is read, as a DataError naming it; a folder
    given where `expected` was wanted says so."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except IsADirectoryError:
        raise DataError(path, f"is a folder, expected {expected}") from None
    except EOFError:
        raise DataError(path, "truncated gzip file: it ends before its compressed data does") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise DataError(path, f"damaged gzip file ({error})") from None
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror or error}") from None


def read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The file's bytes, decompressed if it is gzip; a clear error if it cannot be read. With
    `limit`, at most that many (decompressed) bytes are read: a small gzip file that inflates to
    gigabytes costs no more memory than the limit."""
    with reading_errors(path), open(path, "rb") as handle:
        compressed = handle.read(2) == GZIP_MAGIC
        handle.seek(0)
        if not compressed:
            data = _read_up_to(handle, limit)
        else:
            with gzip.open(handle) as unzipped:
                data = _read_up_to(unzipped, limit)
    if not data:
        raise DataError(path, "the file is empty once decompressed" if compressed else "the file is empty")
    return data


def _read_up_to(stream: BinaryIO, limit: int | None) -> bytes:
    """All of a stream, or its first `limit` bytes, read in chunks: memory follows what is there."""
    if limit is None:
        return stream.read()
    chunks, remaining = [], limit
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


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
