"""Writing outputs so they never half-exist and never replace a user's file unasked.

Every file is written to a temporary name beside its destination and renamed into place, so a
crash, a full disk or Ctrl-C leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from digitlab.errors import DigitlabError, OutputExistsError


def check_new(path: str | Path, force: bool) -> Path:
    """`path` as a Path, refusing it if something is there already and `force` is off."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not force:
        raise OutputExistsError(path)
    return path


def _temporary_sibling(path: Path) -> Path:
    # Keep the suffix: some writers (matplotlib, numpy) choose the format by it.
    return path.with_name(f".{path.stem}.tmp-{secrets.token_hex(4)}{path.suffix}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


# Reasons a write fails that are worth naming when a library reports them only in its own words.
_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG, errno.EIO)


def _reason(error: OSError) -> str:
    """Why a write failed, in the system's words ("No space left on device")."""
    if error.errno is not None:
        return os.strerror(error.errno)
    text = str(error)  # pyarrow, for one, gives no errno and a long message naming its temporary file
    for code in _WRITE_ERRORS:
        if os.strerror(code) in text:
            return os.strerror(code)
    return error.strerror or text


def _write_failed(path: Path, error: OSError) -> DigitlabError:
    return DigitlabError(f"cannot write {path}: {_reason(error)}; nothing there was changed")


def write_file(path: str | Path, write: Callable[[Path], None], force: bool = False) -> Path:
    """Call `write(temporary_path)`, then move the result to `path` in one step."""
    path = check_new(path, force)
    if path.is_dir():
        raise DigitlabError(f"cannot write {path}: it is a folder")
    temporary = _temporary_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temporary)
        _fsync_file(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise _write_failed(path, error) from error
    finally:
        _remove_quietly(temporary)
    return path


def write_bytes(path: str | Path, data: bytes, force: bool = False) -> Path:
    return write_file(path, lambda temporary: temporary.write_bytes(data), force)


def write_text(path: str | Path, text: str, force: bool = False) -> Path:
    return write_file(path, lambda temporary: temporary.write_text(text, encoding="utf-8"), force)


def write_folder(path: str | Path, write: Callable[[Path], None], force: bool = False) -> Path:
    """Fill a temporary folder with `write(folder)`, then put it in place of `path`."""
    path = check_new(path, force)
    if path.exists() and not path.is_dir():
        raise DigitlabError(f"cannot write folder {path}: a file of that name exists")
    temporary = _temporary_sibling(path)
    previous = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
    try:
        temporary.mkdir(parents=True)
        write(temporary)
        if path.exists():
            os.replace(path, previous)
        os.replace(temporary, path)
    except BaseException as error:  # Ctrl-C included: the old folder goes back in place
        if previous.exists() and not path.exists():
            os.replace(previous, path)
        shutil.rmtree(temporary, ignore_errors=True)
        if isinstance(error, OSError):
            raise _write_failed(path, error) from error
        raise
    shutil.rmtree(previous, ignore_errors=True)  # only once the new folder is in place
    return path
