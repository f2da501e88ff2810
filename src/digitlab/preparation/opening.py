"""Opening any image as 8-bit grey: every file format and mode, EXIF rotation, transparency, limits."""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Union

import cv2
import numpy as np

from digitlab.errors import DataError
from digitlab.preparation.operations import ink_bounds
from digitlab.preparation.paper import paper_surface

if TYPE_CHECKING:
    from PIL import Image



ImageSource = Union[str, Path, bytes, "Image.Image"]
"""An image file's path, its bytes, or a PIL image."""


MAX_PIXELS = 40_000_000
"""Images with more pixels are refused (a decompression bomb, or no photo of a digit)."""


WORK_SIDE = 1024  # larger images are reduced to about this before the ink is looked for


def source_name(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return getattr(source, "filename", "") or "<image>"


def _error_path(source: ImageSource) -> str | None:
    name = source_name(source)
    return None if name.startswith("<") else name


def _check_pixel_count(size: tuple[int, int], source: ImageSource) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise DataError(
            _error_path(source),
            f"refused: the image is {width}x{height} pixels, more than the "
            f"{MAX_PIXELS // 1_000_000}-megapixel limit (a decompression bomb, or no digit photo)",
        )
    if width == 0 or height == 0:
        raise DataError(_error_path(source), "the image has no pixels")


def bomb_message(error: Exception) -> str:
    """Pillow's decompression-bomb refusal in digitlab's words, with the pixel count it claims."""
    claimed = re.search(r"\((\d+) pixels\)", str(error))
    size = f"claims {int(claimed.group(1)):,} pixels" if claimed else "is too large"
    return (
        f"refused: the image {size}, more than the {MAX_PIXELS // 1_000_000}-megapixel limit "
        "(a decompression bomb, or no digit photo)"
    )


@contextlib.contextmanager
def image_errors(path: str | Path | None) -> Iterator[None]:
    """What can go wrong while an image file is opened and decoded, as a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        yield
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, not an image") from None
    except UnidentifiedImageError:
        raise DataError(path, "not an image, or a damaged one") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(path, bomb_message(error)) from None
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise DataError(path, f"not an image, or a damaged one ({error})") from None


def _decode(source: ImageSource) -> Image.Image:
    """The first frame of the image file or bytes, its size checked before it is decoded, EXIF
    orientation applied."""
    from PIL import Image

    with image_errors(_error_path(source)), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pillow's "Corrupt EXIF data": the pixels still load
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        if isinstance(source, (bytes, bytearray, memoryview)):
            opened = Image.open(io.BytesIO(bytes(source)))
        else:
            opened = Image.open(Path(source))
        with opened:
            _check_pixel_count(opened.size, source)
            opened.seek(0)
            opened.load()
            return _upright(opened)


def _upright(image: Image.Image) -> Image.Image:
    """A copy of the image turned as its EXIF orientation says (palette and transparency kept)."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError):
        return image.copy()  # a damaged EXIF block: keep the pixels as stored


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma, as Pillow's convert("L"), of float RGB (..., 3)."""
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _resolve_alpha(image: Image.Image) -> np.ndarray:
    """Grey in [0, 1] (1 = white) of an image with an alpha channel.

    Transparent background is paper. When the opaque part is strokes of one even colour
    (drawn on a transparent canvas, white ones included) the alpha channel is the drawing:
    opaque becomes black ink. Other drawings on transparent canvases are composited onto
    white; a picture with transparent margins (opaque for the most part, or a solid block)
    onto its own paper, as fitted to its opaque part, so that no edge appears where the
    margin begins.
    """
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
    alpha = rgba[..., 3]
    grey = _luminance(rgba[..., :3])
    opaque = alpha >= 0.5
    paper: float | np.ndarray = 1.0
    if opaque.any() and not opaque.all():
        rows, columns = ink_bounds(opaque)
        solid = opaque.mean() >= 0.5 or opaque[rows, columns].mean() >= 0.9
        opaque_grey = grey[opaque]
        even_colour = np.percentile(opaque_grey, 95) - np.percentile(opaque_grey, 5) < 0.25
        if solid:
            paper = paper_surface(grey, known=alpha >= 0.99)
        elif even_colour:
            return 1.0 - alpha
    return grey * alpha + paper * (1.0 - alpha)


def high_depth_grey(image: Image.Image) -> np.ndarray:
    """Grey in [0, 1] of 16-bit, 32-bit integer and float images (Pillow's convert("L") clips them)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.max(initial=0) <= 1.0 else 255.0
    else:
        top = 255.0 if values.max(initial=0) <= 255 else 65535.0
    return np.clip(values / top, 0.0, 1.0).astype(np.float32)


def _flatten(image: Image.Image, source: ImageSource) -> Image.Image:
    """Any PIL image as 8-bit grey ("L"), alpha resolved."""
    from PIL import Image

    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        grey = _resolve_alpha(image)
    elif mode.startswith("I") or mode == "F":
        grey = high_depth_grey(image)
    elif mode == "L":
        return image
    else:
        try:
            return image.convert("RGB").convert("L") if mode not in ("1", "RGB") else image.convert("L")
        except (ValueError, OSError):
            raise DataError(_error_path(source), f"image mode {mode} is not supported") from None
    return Image.fromarray(np.round(grey * 255).astype(np.uint8), "L")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_HEADER_BYTES = 26  # the signature, then IHDR's length and name, width, height, bit depth, colour type
PLAIN_GREY_PNG_MAX_BYTES = 1 << 20  # larger files go through Pillow, whose decoding costs little beside them


def _plain_grey_header(head: bytes) -> bool:
    """Whether a file starts as an 8-bit grey PNG: bit depth 8, colour type 0."""
    return (len(head) >= PNG_HEADER_BYTES and head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR"
            and head[24] == 8 and head[25] == 0)


def plain_grey_png(source: ImageSource) -> np.ndarray | None:
    """The pixels of an 8-bit grey PNG of at most WORK_SIDE pixels a side with no transparency,
    EXIF block or animation, the usual form of a scanned digit, decoded by OpenCV (several times
    faster than Pillow on small files, the same pixels); None for anything else, which
    `open_image` reads. Of other files only the first bytes are read."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > PLAIN_GREY_PNG_MAX_BYTES or not _plain_grey_header(data):
            return None
    elif isinstance(source, (str, Path)):
        try:
            with open(source, "rb") as handle:
                head = handle.read(PNG_HEADER_BYTES)
                if not _plain_grey_header(head) or os.fstat(handle.fileno()).st_size > PLAIN_GREY_PNG_MAX_BYTES:
                    return None
                data = head + handle.read()
        except OSError:
            return None  # Pillow names what is wrong
    else:
        return None
    if any(chunk in data for chunk in (b"tRNS", b"eXIf", b"acTL")):
        return None
    size = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
    if max(size) > WORK_SIDE:
        return None  # reduced by Pillow first
    _check_pixel_count(size, source)
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.ndim != 2 or pixels.dtype != np.uint8:
        return None  # damaged: Pillow names what is wrong
    return pixels


def open_image(source: ImageSource) -> Image.Image:
    """Open any common image as 8-bit grey ("L"): PNG, JPEG, BMP, WebP, TIFF, GIF (first frame).

    `source` is a path, the file's bytes or a PIL image, of any size and mode (grey, RGB, RGBA,
    palette, 16-bit, CMYK, ...). The EXIF orientation is applied. A transparent background is
    paper; where the alpha channel holds the strokes (a drawing on a transparent canvas, even
    in white) they become black on white. Images over `MAX_PIXELS` and decompression bombs
    are refused, and so is anything unreadable, with `DataError` naming the file.
    """
    from PIL import Image

    if isinstance(source, Image.Image):
        _check_pixel_count(source.size, source)
        image = _upright(source)
    elif isinstance(source, (str, Path, bytes, bytearray, memoryview)):
        image = _decode(source)
    else:
        raise TypeError(f"expected a path, bytes or a PIL image, got {type(source).__name__}")
    return _flatten(image, source)


def as_grey(image: Image.Image | np.ndarray) -> np.ndarray:
    """Float32 grey in [0, 1], 1 = white, from a PIL image or an array (uint8, or floats in [0, 1])."""
    from PIL import Image

    if isinstance(image, Image.Image):
        image = _flatten(image, image)
        return np.asarray(image, dtype=np.float32) / 255
    values = np.asarray(image)
    values = values.astype(np.float32) / (255 if values.dtype == np.uint8 else 1)
    if values.ndim == 3:
        values = _luminance(values[..., :3])
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {values.shape}")
    return np.clip(values, 0.0, 1.0)
