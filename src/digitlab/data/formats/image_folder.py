"""Digit images as files: `root/<label>/*.png` (labelled), a flat folder (unlabelled), one file.

Images that are already 28x28 greyscale with light ink on a dark background load as they are.
Any other image (a photo, a scan, a drawing, a colour or larger image, or a 28x28 one of dark ink
on light paper) is prepared as MNIST was made by `digitlab.preparation`: its main digit found,
cropped, scaled into 20x20 and centred by centre of mass in 28x28.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from digitlab.data.dataset import Dataset
from digitlab.errors import DataError, NoDigitError
from digitlab.outputs import write_folder
from digitlab.shape import IMAGE_SIDE

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_DIGIT_FOLDER = re.compile(r"^[0-9]$")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_image(path: str | Path) -> np.ndarray:
    """One image file as uint8 (28, 28), white ink on black.

    A 28x28 greyscale image of light ink on a dark background loads exactly as it is. Any other
    image, dark ink on light paper included, is prepared as MNIST was made
    (`digitlab.preparation.prepare`, one digit: the largest, with its pieces); an image in which
    no digit is found raises NoDigitError, a DataError "no digit found".
    """
    from PIL import Image

    from digitlab.preparation import image_errors

    path = Path(path)
    with image_errors(path), Image.open(path) as image:
        if image.size == (IMAGE_SIDE, IMAGE_SIDE):
            image.load()
            pixels = _grey_as_is(image)
            if pixels is not None and not _is_dark_on_light(pixels):
                return pixels
    return _prepared_digit(path)


def _grey_as_is(image) -> np.ndarray | None:
    """The pixels of a greyscale image (grey RGB included), or None for colour and other modes."""
    if image.mode in ("L", "1", "P", "LA", "PA"):
        return np.asarray(image.convert("L"), dtype=np.uint8)
    if image.mode.startswith("I") or image.mode == "F":
        # 16-bit, 32-bit and float grey: scaled to 8 bits as preprocessing scales them
        from digitlab.preparation import high_depth_grey

        return np.round(high_depth_grey(image) * 255).astype(np.uint8)
    if image.mode in ("RGB", "RGBA"):
        channels = np.asarray(image.convert("RGB"))
        if (channels == channels[..., :1]).all():
            return np.ascontiguousarray(channels[..., 0])
    return None


def _is_dark_on_light(pixels: np.ndarray) -> bool:
    """Whether three quarters of the image or more are light: paper, with the ink dark on it."""
    return bool(np.percentile(pixels, 25) >= 128)


def _prepared_digit(path: Path) -> np.ndarray:
    from digitlab.preparation import prepare

    prepared = prepare(path, multi_digit=False)
    if not prepared.digits:
        raise NoDigitError(path)
    return prepared.digits[0]


def _order_key(path: Path) -> tuple:
    # Files named by their index (as `write` names them) keep their original order.
    stem = path.stem
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _read_many(paths: list[Path]) -> np.ndarray:
    if not paths:
        return np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=4) as pool:
        return np.stack(list(pool.map(read_image, paths)))


def visible_entries(folder: Path) -> list[Path]:
    """The folder's entries, sorted, hidden ones (names starting with '.') left out."""
    try:
        return sorted(entry for entry in folder.iterdir() if not entry.name.startswith("."))
    except OSError as error:
        raise DataError(folder, f"cannot list the folder: {error.strerror or error}") from None


def ordered_files(folder: str | Path) -> tuple[list[Path], np.ndarray | None]:
    """The image files of a labelled folder (subfolders 0..9) or a flat folder, in the order
    `read_folder` reads them, with their labels (None for a flat folder)."""
    folder = Path(folder)
    entries = visible_entries(folder)
    subfolders = [entry for entry in entries if entry.is_dir()]
    images = [entry for entry in entries if entry.is_file() and is_image_file(entry)]
    if subfolders:
        not_digits = [entry.name for entry in subfolders if not _DIGIT_FOLDER.match(entry.name)]
        if not_digits:
            raise DataError(
                folder, f"subfolders must be named 0..9 by label; found {', '.join(not_digits[:5])}"
            )
        if images:
            raise DataError(
                folder, f"mixes label folders 0..9 with loose images such as {images[0].name}"
            )
        labelled = [
            (path, int(subfolder.name))
            for subfolder in subfolders
            for path in visible_entries(subfolder)
            if path.is_file() and is_image_file(path)
        ]
        if not labelled:
            raise DataError(folder, "no images in the label folders 0..9")
        labelled.sort(key=lambda item: (_order_key(item[0]), item[1]))
        return [path for path, _ in labelled], np.array([label for _, label in labelled], dtype=np.int64)
    if not images:
        raise DataError(folder, f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) and no label folders 0..9")
    images.sort(key=_order_key)
    return images, None


def read_images(paths: list[Path]) -> np.ndarray:
    """The image files `paths` as uint8 (N, 28, 28), in order, read a few at a time."""
    return _read_many(paths)


def read_folder(folder: str | Path, name: str | None = None) -> Dataset:
    """A labelled folder (subfolders 0..9) or a flat folder of images."""
    folder = Path(folder)
    paths, labels = ordered_files(folder)
    return Dataset(_read_many(paths), labels, name=name or folder.name, origin=str(folder))


def read_file(path: str | Path) -> Dataset:
    """One image file as an unlabelled dataset of one."""
    path = Path(path)
    return Dataset(read_image(path)[None], None, name=path.stem, origin=str(path))


def _save_images(folder: Path, dataset: Dataset) -> None:
    from PIL import Image

    width = max(5, len(str(len(dataset) - 1)))
    if dataset.labels is not None:
        for digit in np.unique(dataset.labels):
            (folder / str(digit)).mkdir()
    for index, pixels in enumerate(dataset.images):
        subfolder = folder if dataset.labels is None else folder / str(dataset.labels[index])
        Image.fromarray(pixels).save(subfolder / f"{index:0{width}d}.png", optimize=False)


def write(folder: str | Path, parts: dict[str, Dataset], force: bool = False) -> Path:
    """Write PNGs named by index: `folder/<label>/<index>.png`, or `folder/<part>/...` for several parts."""

    def fill(temporary: Path) -> None:
        if len(parts) == 1:
            _save_images(temporary, next(iter(parts.values())))
            return
        for part, dataset in parts.items():
            (temporary / part).mkdir()
            _save_images(temporary / part, dataset)

    return write_folder(folder, fill, force)
