"""MNIST's IDX format: a big-endian header (magic, dimension sizes) followed by raw values.

The magic number is two zero bytes, a type code (0x08 for unsigned bytes) and the number of
dimensions, so images are 0x00000803 and labels 0x00000801. Files may be gzipped or raw.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np

from digitlab.data import decoded
from digitlab.data.compressed import GZIP_MAGIC, read_bytes
from digitlab.errors import DataError
from digitlab.outputs import write_file
from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
UNSIGNED_BYTE = 0x08
_TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int",
               0x0D: "float", 0x0E: "double"}


MAX_IDX_HEADER = 4 + 4 * 255  # the magic number, then up to 255 dimension sizes
MAX_IDX_VALUES = 2**31 - 1  # 2.7 million 28x28 images, 40 times MNIST


def _header(path: Path, expected_dimensions: int, what: str) -> tuple[tuple[int, ...], int]:
    """The shape an IDX file's header announces, checked, and the header's length in bytes."""
    header = read_bytes(path, limit=MAX_IDX_HEADER)
    shape, header_size = _checked_header(path, header, expected_dimensions, what)
    if math.prod(shape) > MAX_IDX_VALUES:
        raise DataError(path, f"the header promises {' x '.join(map(str, shape))} values, more than the "
                              f"{MAX_IDX_VALUES:,} digitlab reads from one file")
    return shape, header_size


def _decoded(path: Path, shape: tuple[int, ...], header_size: int) -> np.ndarray:
    """The values after the header, as the header announces them: never more are read than it
    announces (and a byte more, to notice extra)."""
    expected_size = math.prod(shape)
    data = read_bytes(path, limit=header_size + expected_size + 1)
    payload = memoryview(data)[header_size:]  # no copy
    if len(payload) < expected_size:
        raise DataError(
            path,
            f"truncated: the header promises {' x '.join(map(str, shape))} values "
            f"({expected_size} bytes) but only {len(payload)} bytes follow",
        )
    if len(payload) > expected_size:
        extra = _size_after_decompression(path) - header_size - expected_size
        raise DataError(
            path,
            f"{extra} bytes more than the header's {' x '.join(map(str, shape))} values"
            if extra > 0 else f"more bytes than the header's {' x '.join(map(str, shape))} values",
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def _size_after_decompression(path: Path) -> int:
    """The file's size, or for gzip the size its trailer records (0 if it cannot be read)."""
    with open(path, "rb") as handle:
        if handle.read(2) != GZIP_MAGIC:
            return path.stat().st_size
        if path.stat().st_size < 4:
            return 0
        handle.seek(-4, 2)
        return struct.unpack("<I", handle.read(4))[0]


def _checked_header(path: Path, data: bytes, expected_dimensions: int, what: str) -> tuple[tuple[int, ...], int]:
    """The dimension sizes in an IDX header, and the header's length in bytes."""
    if len(data) < 4:
        raise DataError(path, f"too short for an IDX header ({len(data)} bytes)")
    zero, type_code, dimensions = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in _TYPE_NAMES:
        raise DataError(
            path,
            f"not an IDX file: magic number 0x{data[:4].hex()}, expected "
            f"0x{IMAGES_MAGIC:08x} (images) or 0x{LABELS_MAGIC:08x} (labels)",
        )
    if dimensions != expected_dimensions:
        raise DataError(
            path,
            f"IDX {what} need {expected_dimensions} dimension(s), this file has {dimensions} "
            f"(magic 0x{data[:4].hex()})",
        )
    if type_code != UNSIGNED_BYTE:
        raise DataError(path, f"IDX values are {_TYPE_NAMES[type_code]}s; digitlab reads unsigned bytes")
    header_size = 4 + 4 * dimensions
    if len(data) < header_size:
        raise DataError(path, f"truncated IDX header: {len(data)} bytes, needs {header_size}")
    return struct.unpack(f">{dimensions}I", data[4:header_size]), header_size


def _check_labels(path: Path, labels: np.ndarray) -> None:
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if len(bad):
        raise DataError(path, f"label {labels[bad[0]]} is outside 0..9", f"item {bad[0]}")


def read_images(path: str | Path) -> np.ndarray:
    """Images as uint8 (N, 28, 28) from an IDX3 file: read-only, and memory-mapped from the cache
    once a gzip file has been decoded (see `digitlab.data.decoded`)."""
    path = Path(path)
    shape, header_size = _header(path, 3, "images")
    if shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(path, f"images are {shape[1]}x{shape[2]} pixels; digitlab reads 28x28 digits")
    return decoded.cached(path, shape, lambda: _decoded(path, shape, header_size))


def read_labels(path: str | Path) -> np.ndarray:
    """Labels as int64 (N,) from an IDX1 file, checked to be 0..9."""
    path = Path(path)
    shape, header_size = _header(path, 1, "labels")
    labels = decoded.cached(path, shape, lambda: _decoded(path, shape, header_size),
                            check=lambda values: _check_labels(path, values))
    return labels.astype(np.int64)


def kind_of(path: Path) -> str | None:
    """'images' or 'labels' if `path` looks like an IDX file of that kind, else None."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(2)
            handle.seek(0)
            if start == GZIP_MAGIC:
                with gzip.open(handle) as unzipped:
                    magic = unzipped.read(4)
            else:
                magic = handle.read(4)
    except (OSError, EOFError):
        return None
    if len(magic) < 4:
        return None
    return {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}.get(struct.unpack(">I", magic)[0])


def _encode(array: np.ndarray) -> bytes:
    magic = struct.pack(">HBB", 0, UNSIGNED_BYTE, array.ndim)
    return magic + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def _write(path: Path, array: np.ndarray, force: bool) -> Path:
    data = _encode(array)
    if path.suffix == ".gz":
        # mtime 0 keeps the file identical from run to run.
        data = gzip.compress(data, mtime=0)
    return write_file(path, lambda temporary: temporary.write_bytes(data), force)


def write_images(path: str | Path, images: np.ndarray, force: bool = False) -> Path:
    """Write uint8 (N, 28, 28) images; gzipped when the name ends in .gz."""
    return _write(Path(path), images, force)


def write_labels(path: str | Path, labels: np.ndarray, force: bool = False) -> Path:
    """Write labels 0..9; gzipped when the name ends in .gz."""
    return _write(Path(path), np.asarray(labels), force)
