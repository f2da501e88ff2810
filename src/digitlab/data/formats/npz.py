"""Keras-style `mnist.npz`: arrays x_train, y_train, x_test, y_test (any part name works)."""

from __future__ import annotations

import io
import math
import re
import zipfile
from pathlib import Path

import numpy as np

from digitlab.data.dataset import Dataset
from digitlab.errors import DataError
from digitlab.outputs import write_file
from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

_IMAGES_KEY = re.compile(r"^x_(\w+)$")


def _pixels(path: Path, key: str, array: np.ndarray) -> np.ndarray:
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3 or array.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(path, f"{key} has shape {array.shape}; digitlab reads (N, 28, 28) images")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(path, f"{key} holds {array.dtype} values, not pixel numbers")
    if array.size and (np.isnan(array).any() if array.dtype.kind == "f" else False):
        raise DataError(path, f"{key} holds NaN values")
    if array.size and (array.min() < 0 or array.max() > 255 or not np.all(np.mod(array, 1) == 0)):
        raise DataError(path, f"{key} must hold whole pixel values 0..255 ({array.dtype} given)")
    return array.astype(np.uint8)


def _labels(path: Path, key: str, array: np.ndarray, count: int) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == NUM_CLASSES:
        array = array.argmax(axis=1)  # one-hot labels
    if array.shape != (count,):
        raise DataError(path, f"{key} has shape {array.shape}, expected ({count},) to match the images")
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(path, f"{key} holds {array.dtype} values; labels must be integers 0..9")
    bad = np.flatnonzero((array < 0) | (array >= NUM_CLASSES))
    if len(bad):
        raise DataError(path, f"label {array[bad[0]]} is outside 0..9", f"{key}[{bad[0]}]")
    return array.astype(np.int64)


def _check_declared_size(path: Path, archive: np.lib.npyio.NpzFile, key: str) -> None:
    """Refuse an array whose header claims more values than its member of the archive holds,
    before NumPy sets memory aside for them."""
    try:
        member = archive.zip.getinfo(f"{key}.npy")
        with archive.zip.open(member) as stream:
            version = np.lib.format.read_magic(stream)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(stream)
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile):
        return  # loading it names what is wrong
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > member.file_size:
        raise DataError(path, f"{key} claims shape {tuple(shape)} ({claimed:,} bytes) but holds "
                              f"{member.file_size:,} bytes")


def read(path: str | Path) -> dict[str, Dataset]:
    """Every part (`x_<part>` with optional `y_<part>`) of an .npz file, by part name."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a folder, expected an .npz file")
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except zipfile.BadZipFile as error:
        raise DataError(path, f"not a readable .npz file: a damaged or truncated zip archive ({error})") from None
    except (OSError, EOFError) as error:
        raise DataError(path, f"not a readable .npz file ({error})") from None
    except ValueError as error:  # neither zip nor .npy: NumPy would try (and refuse) to unpickle it
        reason = "not a zip archive" if "pickle" in str(error) else str(error)
        raise DataError(path, f"not a readable .npz file ({reason})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(path, "a single .npy array, not an .npz archive of x_<part> / y_<part> arrays")
    parts: dict[str, Dataset] = {}
    with archive:
        keys = list(archive.keys())
        for key in keys:
            match = _IMAGES_KEY.match(key)
            if not match:
                continue
            part = match.group(1)
            try:
                _check_declared_size(path, archive, key)
                images = _pixels(path, key, archive[key])
                labels_key = f"y_{part}"
                labels = (
                    _labels(path, labels_key, archive[labels_key], len(images))
                    if labels_key in keys
                    else None
                )
            except DataError:
                raise
            except ValueError as error:
                if "allow_pickle" in str(error):
                    raise DataError(
                        path, f"array {key} holds Python objects, which digitlab never loads (unsafe)"
                    ) from None
                raise DataError(path, f"cannot read array {key}: {error}") from None
            except (zipfile.BadZipFile, OSError, EOFError) as error:
                raise DataError(path, f"damaged array in the archive ({error})") from None
            except MemoryError:
                raise DataError(path, f"array {key} does not fit in memory") from None
            parts[part] = Dataset(images, labels, name=f"{path.stem}-{part}", origin=str(path))
    if not parts:
        raise DataError(path, f"no image arrays named x_<part> (found: {', '.join(keys) or 'none'})")
    return parts


def write(path: str | Path, parts: dict[str, Dataset], force: bool = False) -> Path:
    """Write parts as x_<part> / y_<part> arrays, compressed."""
    arrays: dict[str, np.ndarray] = {}
    for part, dataset in parts.items():
        arrays[f"x_{part}"] = dataset.images
        if dataset.labels is not None:
            arrays[f"y_{part}"] = dataset.labels.astype(np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    data = buffer.getvalue()
    return write_file(path, lambda temporary: temporary.write_bytes(data), force)
