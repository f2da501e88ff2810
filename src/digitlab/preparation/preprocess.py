"""Turning people's own digits (photos, scans, drawings) into MNIST-style 28x28 images.

MNIST digits are white ink on black, the digit scaled (anti-aliased, aspect ratio kept) so that
its longer side is 20 pixels and placed in a 28x28 image with its centre of mass at the centre.
A model trained on them guesses when fed anything else, so every image a user gives is prepared
the same way, here, whether it comes from `digitlab predict`, an image folder or a drawing:

1. `open_image`: any common image file, bytes or PIL image becomes 8-bit grey, EXIF rotation
   applied, transparency resolved (a canvas drawing whose alpha channel holds the strokes gives
   dark strokes on white, whatever their colour).
2. `to_grey_ink`: the ink as floats in [0, 1], 1 = full ink, background exactly 0. The paper's
   uneven lighting is modelled by a smooth surface fitted robustly and divided out, the polarity
   (dark on light or light on dark) is read from which side of the background the strong
   differences lie, and the ink levels are stretched but kept (anti-aliased edges stay grey).
   Specks too small to be strokes are removed.
3. `segment`: connected pieces of ink; what lies around the paper (a dark table, a shadow at
   the edge) and stray dots dropped, pieces of one digit (a 5's hat, a broken stroke) merged,
   one `Box` per digit from left to right.
4. `to_mnist`: each digit cropped, strokes thickened when a thin pen would vanish at 20 pixels,
   scaled into 20x20 and centred by centre of mass in 28x28, uint8 white on black.

`prepare` runs all four. A 28x28 image that is already MNIST-style comes out as it went in.
Filters come from scipy.ndimage; decoding plain grey PNGs, connected components and dilation
from OpenCV, about ten times faster on the small scans that batch reading goes through by the
thousand (see bench/batch_reading.py).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import cv2
import numpy as np
from scipy import ndimage

from digitlab.errors import DataError
from digitlab.shape import IMAGE_SIDE

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "MAX_PIXELS", "Box", "ImageSource", "Prepared", "open_image", "prepare", "segment",
    "to_grey_ink", "to_mnist",
]

ImageSource = Union[str, Path, bytes, "Image.Image"]
"""An image file's path, its bytes, or a PIL image."""

MAX_PIXELS = 40_000_000
"""Images with more pixels are refused (a decompression bomb, or no photo of a digit)."""

DIGIT_BOX = 20  # MNIST fitted each digit's longer side into 20 pixels...
MNIST_CENTRING = 1.5  # pixels: MNIST's centres of mass are all within this of CENTRE
CENTRE = IMAGE_SIDE / 2  # ...and put its centre of mass here (pixel centres at 0, 1, ..., 27)
SMALL_SIDE = 32  # images narrower than this are crops or small scans: even lighting assumed
PAPER_BINS = 32  # grey levels told apart when looking for a small image's paper
WORK_SIDE = 1024  # larger images are reduced to about this before the ink is looked for

# Ink must stand out from the paper by this share of the paper's brightness, and by this many
# times the noise, before anything is read as ink: below it an image is blank.
MIN_CONTRAST = 0.1
NOISE_SIGMAS = 5.0
FLOOR_SIGMAS = 3.0  # ink levels start this many noise sigmas above the paper
FULL_INK_PERCENTILE = 90  # of the clearly-ink pixels: the level stretched to full ink

# Stroke widths in pixels of the 20-pixel box, measured as 2 * area / perimeter of the pixels
# at half ink or more: MNIST's median is 2.0 and only 3 of its 10,000 test digits are below 0.8.
THIN_STROKE = 0.8
TARGET_STROKE = 2.0
THICKEN_SIDE = 4 * DIGIT_BOX  # thin strokes are thickened at this resolution
EDGE_SOFTNESS = 0.2  # half the range of ink levels kept as edge in sharply resolved digits

# Segmenting: shares of the largest piece, of the line height (the median height of the digits).
NOISE_AREA = 0.02  # pieces smaller than this share of the largest piece's area are noise
MAX_INK_SHARE = 0.4  # a piece covering more of the image than this is background, not ink
EDGE_CONTACT = 0.5  # a piece running along this share of the image's rim is background
EDGE_BLOB_WIDTH = 3.0  # pieces at the edge with strokes this many times wider than any inside are background
STACK_OVERLAP = 0.5  # horizontal overlap (share of the narrower) of pieces of one digit
STACK_GAP = 0.3  # largest vertical gap between stacked pieces, as a share of the taller one
DIGIT_ASPECT = 0.8  # overlapping pieces together no wider than this share of their height are one digit
FRAGMENT_HEIGHT = 0.5  # pieces lower than this share of the line height are fragments
FRAGMENT_REACH = 0.3  # fragments this near a digit (share of line height) join it
ONE_DIGIT_ASPECT = 1.0  # pieces together no wider than tall are one digit...
DIGIT_GAP = 0.15  # ...unless full-height ones stand apart by this share of the height (an 11)
LINE_SPAN = 0.9  # ruled lines run across this share of the image...
LINE_OVERHANG = 0.1  # ...past the digits by this share of it at one end, and not short of them...
LINE_SHORTFALL = 0.02  # ...by more than this share at the other (a digit touching the edge)...
LINE_WIDTH = 0.75  # ...and no thicker than this share of the handwriting's strokes
SINGLE_REACH = 0.3
# Bounds on the work per image: the largest pieces of ink looked at, and digits read.
MAX_PIECES = 300
MAX_DIGITS = 100  # in single-digit mode, pieces this near the main digit (share of its size) join it


@dataclass(frozen=True)
class Box:
    """A digit's pixel box: columns left..right-1, rows top..bottom-1.

    `mask`, when present, marks which pixels inside the box belong to this digit (a
    neighbouring digit's stroke may reach into the box); it is (bottom - top, right - left).
    """

    left: int
    top: int
    right: int
    bottom: int
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def as_tuple(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom)."""
        return (self.left, self.top, self.right, self.bottom)

    def crop(self, ink: np.ndarray) -> np.ndarray:
        """This digit's ink: the box cut out of `ink`, other digits' pixels set to 0."""
        piece = ink[self.top : self.bottom, self.left : self.right]
        return piece * self.mask if self.mask is not None else piece.copy()

    def scaled(self, across: float, down: float, width: int, height: int) -> Box:
        """The box in an image `across` times wider and `down` times taller (`width` x `height`
        pixels), without a mask."""
        return Box(
            max(0, math.floor(self.left * across)),
            max(0, math.floor(self.top * down)),
            min(width, math.ceil(self.right * across)),
            min(height, math.ceil(self.bottom * down)),
        )


@dataclass
class Prepared:
    """An image prepared for an MNIST model.

    `digits` holds one uint8 (28, 28) MNIST-style image per digit found, left to right, and
    `boxes` their pixel boxes in the original image (after EXIF rotation); both are empty when
    the image holds no ink. `ink` is the ink map the digits were cut from (float32, 1 = ink),
    at `scale` times the original size.
    """

    source: str
    size: tuple[int, int]
    digits: list[np.ndarray]
    boxes: list[Box]
    ink: np.ndarray = field(repr=False)
    scale: float = 1.0

    @property
    def found(self) -> bool:
        return bool(self.digits)


# Opening images


def _source_name(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return getattr(source, "filename", "") or "<image>"


def _error_path(source: ImageSource) -> str | None:
    name = _source_name(source)
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
        rows, columns = _bounding(opaque)
        solid = opaque.mean() >= 0.5 or opaque[rows, columns].mean() >= 0.9
        opaque_grey = grey[opaque]
        even_colour = np.percentile(opaque_grey, 95) - np.percentile(opaque_grey, 5) < 0.25
        if solid:
            paper = _background(grey, known=alpha >= 0.99)
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
PLAIN_GREY_PNG_MAX_BYTES = 1 << 20  # larger files go through Pillow, whose decoding costs little beside them


def _plain_grey_png(source: ImageSource) -> np.ndarray | None:
    """The pixels of an 8-bit grey PNG of at most WORK_SIDE pixels a side with no transparency,
    EXIF block or animation, the usual form of a scanned digit, decoded by OpenCV (several times faster than Pillow on
    small files, the same pixels); None for anything else, which `open_image` reads."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        try:
            path = Path(source)
            if path.stat().st_size > PLAIN_GREY_PNG_MAX_BYTES:
                return None
            data = path.read_bytes()
        except OSError:
            return None  # Pillow names what is wrong
    else:
        return None
    # The header chunk: width, height, bit depth 8, colour type 0 (grey).
    if len(data) > PLAIN_GREY_PNG_MAX_BYTES or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    if data[24] != 8 or data[25] != 0 or any(chunk in data for chunk in (b"tRNS", b"eXIf", b"acTL")):
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


# Small image operations (scipy.ndimage)


def _gaussian_blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with edges repeated; below 0.3 pixels it would change nothing visible."""
    if sigma < 0.3:
        return values
    return ndimage.gaussian_filter(values, sigma, mode="nearest", truncate=2.5)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2 * radius + 1) square, nothing beyond the image's edge."""
    if radius <= 0:
        return mask.copy()
    square = np.ones((2 * radius + 1, 2 * radius + 1), dtype=np.uint8)
    return cv2.dilate(mask.astype(np.uint8), square, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def _grey_dilate(values: np.ndarray, radius: int) -> np.ndarray:
    """Grey-level dilation (a max filter) by a (2 * radius + 1) square, edges repeated."""
    square = np.ones((2 * radius + 1, 2 * radius + 1), dtype=np.uint8)
    return cv2.dilate(np.ascontiguousarray(values, dtype=np.float32), square, borderType=cv2.BORDER_REPLICATE)


def _resize(
    values: np.ndarray, width: int, height: int, region: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """A float image (or its `region`: left, top, right, bottom, in fractional pixels) resized to
    `width` x `height` with anti-aliasing: area averaging down, Lanczos up."""
    from PIL import Image

    if region is None:
        if values.shape == (height, width):
            return values.astype(np.float32, copy=True)
        region = (0.0, 0.0, float(values.shape[1]), float(values.shape[0]))
    shrinking = width <= region[2] - region[0] and height <= region[3] - region[1]
    method = Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS
    image = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32), "F")
    return np.asarray(image.resize((width, height), method, box=region), dtype=np.float32)


@dataclass
class _Components:
    """8-connected components of a mask: `labels` 1..count per pixel (0 = none), their
    `areas` and boxes (`tops`, `lefts`, `bottoms`, `rights`; bottom and right exclusive)."""

    labels: np.ndarray
    count: int
    areas: np.ndarray
    tops: np.ndarray
    lefts: np.ndarray
    bottoms: np.ndarray
    rights: np.ndarray


def _components(mask: np.ndarray) -> _Components:
    """Label the 8-connected components of a boolean mask (OpenCV: labels, boxes and areas in
    one pass, about ten times faster than scipy.ndimage.label and find_objects)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        np.ascontiguousarray(mask, dtype=np.uint8), connectivity=8, ltype=cv2.CV_32S)
    stats = stats[1:].astype(np.int64)
    lefts, tops = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    rights, bottoms = lefts + stats[:, cv2.CC_STAT_WIDTH], tops + stats[:, cv2.CC_STAT_HEIGHT]
    return _Components(labels, count - 1, stats[:, cv2.CC_STAT_AREA], tops, lefts, bottoms, rights)


def _chosen(pieces: _Components, indices, window: tuple[slice, slice] | None = None) -> np.ndarray:
    """The mask of the pieces with these (0-based) indices, over the whole image or a window of it."""
    wanted = np.zeros(pieces.count + 1, dtype=bool)
    wanted[np.asarray(indices, dtype=np.int64) + 1] = True
    return wanted[pieces.labels if window is None else pieces.labels[window]]


def _perimeters(pieces: _Components) -> np.ndarray:
    """Each component's perimeter: the pixel edges between it and anything else, the image's
    border included."""
    labels, size = pieces.labels, pieces.count + 1
    perimeters = np.zeros(size, dtype=np.int64)
    for first, second in ((labels[:-1], labels[1:]), (labels[:, :-1], labels[:, 1:])):
        edge = first != second
        perimeters += np.bincount(first[edge], minlength=size) + np.bincount(second[edge], minlength=size)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return (perimeters + np.bincount(border, minlength=size))[1:]


def _stroke_width(mask: np.ndarray) -> float:
    """The mean stroke width of a mask in pixels, 2 * area / perimeter (0 when empty)."""
    area = int(mask.sum())
    if area == 0:
        return 0.0
    perimeter = (np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
                 + np.count_nonzero(mask[0]) + np.count_nonzero(mask[-1])
                 + np.count_nonzero(mask[:, 0]) + np.count_nonzero(mask[:, -1]))
    return 2.0 * area / perimeter


# Finding the ink


def _as_grey(image: Image.Image | np.ndarray) -> np.ndarray:
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


def _densest_band(values: np.ndarray, share: float = 0.3) -> tuple[float, float]:
    """The narrowest range of levels holding `share` of the values."""
    ordered = np.sort(values)
    window = max(1, int(share * ordered.size))
    start = int(np.argmin(ordered[window - 1 :] - ordered[: ordered.size - window + 1]))
    return float(ordered[start]), float(ordered[start + window - 1])


def _fit_surface(
    design: np.ndarray, values: np.ndarray, usable: np.ndarray, inliers: np.ndarray
) -> tuple[np.ndarray, float]:
    """Least squares fitted to `inliers`, then refitted to the values near the surface; the
    coefficients and the spread (robust standard deviation) of the values around it."""
    terms = design.shape[1]
    coefficients = np.zeros(terms, dtype=np.float32)
    coefficients[0] = np.median(values[usable])
    spread = 0.01
    for _ in range(6):
        if inliers.sum() < 2 * terms:
            break
        chosen = design[inliers]
        normal = chosen.T @ chosen + 1e-6 * np.eye(terms, dtype=np.float32)
        coefficients = np.linalg.solve(normal, chosen.T @ values[inliers])
        residual = values - design @ coefficients
        spread = max(1.4826 * float(np.median(np.abs(residual[inliers]))), 0.01)
        kept = usable & (np.abs(residual) <= 2.5 * spread)
        if np.array_equal(kept, inliers):
            break
        inliers = kept
    return coefficients, spread


def _paper_level(grey: np.ndarray) -> float:
    """The paper's grey level in a small crop or scan: the most common level, counted over the
    whole image and, with the same weight, over its rim. Bold ink can cover half of a binary
    scan stretched to fill its box, but even a digit touching every edge leaves most of the
    rim to the paper."""
    bins = np.minimum((grey * PAPER_BINS).astype(np.int32), PAPER_BINS - 1)
    rim = np.concatenate([bins[0], bins[-1], bins[1:-1, 0], bins[1:-1, -1]])
    counts = (np.bincount(bins.ravel(), minlength=PAPER_BINS) / bins.size
              + np.bincount(rim, minlength=PAPER_BINS) / rim.size)
    mode = int(np.argmax(counts))
    return _median(grey[bins == mode])


def _background(grey: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """The paper (or screen) under the ink: a quadratic surface fitted robustly to the grey levels.

    The fit runs on a small copy of the image. It starts from the densest band of levels and
    keeps the pixels near its surface, so ink of either polarity is left out. When most of the
    middle of the image is off that surface and mostly on one grown from the middle's densest
    band, which also covers much of the image, that one is taken: a dark table filling much of
    the frame around the paper. A smooth surface takes in gradients and vignetting of the
    lighting but never follows a stroke. Only the `known` pixels, when given, are fitted; the
    surface covers the whole image.
    """
    height, width = grey.shape
    if min(height, width) < SMALL_SIDE and known is None:
        return np.full(grey.shape, _paper_level(grey), dtype=np.float32)
    grid_side = 48
    shrink = min(1.0, grid_side / max(height, width))
    small = _resize(grey, max(1, round(width * shrink)), max(1, round(height * shrink)))

    def axis(count: int) -> np.ndarray:
        return ((np.arange(count) + 0.5) / count * 2 - 1).astype(np.float32)

    # A plane with curvature: 1, x, y, x², xy, y²; only a constant for small crops and scans,
    # where a curved surface would bend to fit the ink and lighting cannot vary much.
    terms = 1 if min(height, width) < SMALL_SIDE else 6
    y, x = np.meshgrid(axis(small.shape[0]), axis(small.shape[1]), indexing="ij")
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y][:terms], axis=-1).reshape(-1, terms)
    values = small.ravel()
    usable = np.ones(values.shape, dtype=bool)
    if known is not None:
        usable = _resize(known.astype(np.float32), small.shape[1], small.shape[0]).ravel() > 0.99
        if not usable.any():
            return np.full(grey.shape, float(np.median(grey)), dtype=np.float32)
    rows, columns = small.shape
    middle = np.zeros(small.shape, dtype=bool)
    middle[rows // 4 : rows - rows // 4, columns // 4 : columns - columns // 4] = True
    middle = middle.ravel() & usable
    def fitted(band: tuple[float, float]) -> tuple[np.ndarray, float, float]:
        """The surface grown from a band of levels, and the shares of the middle and of the
        whole image lying on it."""
        low, high = band
        start = usable & (values >= low) & (values <= high)
        coefficients, spread = _fit_surface(design, values, usable, start)
        near = np.abs(values - design @ coefficients) <= max(2.5 * spread, 0.05)
        return coefficients, float(near[middle].mean()) if middle.any() else 1.0, float(near[usable].mean())

    coefficients, share, _ = fitted(_densest_band(values[usable]))
    if share < 0.5 and middle.sum() >= 10:
        # Most of the middle is off the surface: a dark table may fill the frame around the
        # paper (or a bold digit fill the middle, which then covers little of the whole).
        middle_coefficients, middle_share, whole_share = fitted(_densest_band(values[middle]))
        if middle_share > 0.7 and whole_share > 0.4:
            coefficients = middle_coefficients
    best = np.zeros(6, dtype=np.float32)
    best[:terms] = coefficients
    constant, along_x, along_y, x_squared, x_times_y, y_squared = best
    x, y = axis(width)[None, :], axis(height)[:, None]
    surface = constant + along_x * x + along_y * y + x_squared * x * x + x_times_y * x * y + y_squared * y * y
    return np.clip(surface, 0.0, 1.0).astype(np.float32)


def _percentile(values: np.ndarray, percent: float) -> float:
    """np.percentile's linear interpolation, by partial sorting (np.percentile sorts and checks
    far more than one level of a small image needs)."""
    values = np.ravel(values)
    position = percent / 100 * (values.size - 1)
    below = int(position)
    above = min(below + 1, values.size - 1)
    ordered = np.partition(values, [below, above])
    fraction = position - below
    low, high = float(ordered[below]), float(ordered[above])
    return low + (high - low) * fraction if fraction < 0.5 else high - (high - low) * (1 - fraction)


def _median(values: np.ndarray) -> float:
    """The median (the upper of the middle two for an even count): a robust level or spread,
    found by partial sorting without np.median's checks, several times a small image."""
    values = np.ravel(values)
    middle = values.size // 2
    return float(np.partition(values, middle)[middle])


def _noise(values: np.ndarray) -> float:
    """The noise's standard deviation, from the median absolute deviation (ink is a minority)."""
    sample = values.ravel()
    if sample.size > 40_000:
        sample = sample[:: sample.size // 40_000]
    return 1.4826 * _median(np.abs(sample - _median(sample)))


def _paper_noise(contrast: np.ndarray) -> float:
    """The noise's standard deviation in a contrast map (paper at 0, ink above it).

    Ink only raises the contrast, so the values at or below 0 are paper and their spread is
    the noise's (the median of a half-normal's magnitude is 0.6745 sigma), however much of a
    tight crop the ink covers.
    """
    sample = contrast.ravel()
    if sample.size > 40_000:
        sample = sample[:: sample.size // 40_000]
    paper = sample[sample <= 0]
    if paper.size < 0.05 * sample.size:
        return _noise(sample)
    return min(_median(-paper) / 0.6745, _noise(sample))


def _ink_is_dark(grey: np.ndarray, background: np.ndarray) -> bool:
    """Whether the ink is darker than the background: where the strong differences lie."""
    residual = grey - background
    margin = FLOOR_SIGMAS * max(_noise(residual), 1 / 255)
    dark = np.clip(-residual - margin, 0, None).sum()
    light = np.clip(residual - margin, 0, None).sum()
    if dark == light:  # nothing stands out: blank, call it paper
        return float(np.median(background)) >= 0.5
    return bool(dark > light)


def to_grey_ink(image: Image.Image | np.ndarray) -> np.ndarray:
    """The ink of a digit image: float32 (H, W) in [0, 1] where 1 is full ink and 0 background.

    Either polarity is taken (dark ink on light paper is inverted). The background is fitted as
    a smooth surface and divided out (dark ink) or subtracted (light ink), so uneven lighting
    goes. Pixels that stand out clearly from the noise mark the strokes; the ink levels near
    them are stretched so that the stroke core is full ink, keeping anti-aliased edges grey,
    and everything else is set to 0. Specks too small to be a stroke are removed, and so are
    ruled lines and printed boxes (see `_ruled_lines`). A blank or noise-only image gives all
    zeros.
    """
    grey = _as_grey(image)
    height, width = grey.shape
    background = _background(grey)
    if _ink_is_dark(grey, background):
        contrast = 1.0 - grey / np.maximum(background, 0.05)
    else:
        contrast = (grey - background) / np.maximum(1.0 - background, 0.05)
    contrast = contrast.astype(np.float32)
    # Photos are smoothed a little before the ink is judged; small clean images are left alone.
    smoothed = _gaussian_blur(contrast, max(height, width) / 700)
    # A small crop's paper is one flat level, so its noise shows on the paper's side alone; in
    # a larger image the fitted surface only approaches the paper, and the spread about the
    # median is the safer measure.
    noise = _paper_noise(smoothed) if min(height, width) < SMALL_SIDE else _noise(smoothed)
    clear = max(NOISE_SIGMAS * noise, MIN_CONTRAST)
    clearly_ink = smoothed > clear
    nothing = np.zeros(grey.shape, dtype=np.float32)
    if clearly_ink.sum() < 3:
        return nothing
    full = _percentile(smoothed[clearly_ink], FULL_INK_PERCENTILE)
    floor = FLOOR_SIGMAS * noise
    # Ruled lines and printed boxes are found whole, faint parts too, and are no ink.
    smoothed = np.where(_ruled_lines(smoothed > max(floor, 0.2 * clear)), 0.0, smoothed)
    strong = smoothed >= max(0.5 * full, clear)
    pieces = _components(strong)
    # Specks: the size of a stroke's dot on a page of this size, or a lone pixel.
    min_speck = max(2.0, (max(height, width) / 250) ** 2)
    big = np.flatnonzero(pieces.areas >= min_speck) + 1
    if big.size == 0:
        return nothing
    strong = _chosen(pieces, big - 1)
    # The ink is what lies near the strong strokes: their anti-aliased edges, not long faint lines.
    reach = min(int(math.ceil(_stroke_width(strong) / 2)) + 1, max(2, max(height, width) // 40))
    kept = _dilate(strong, reach) & (smoothed > floor)
    levels = np.clip((smoothed - floor) / max(full - floor, 1e-6), 0.0, 1.0)
    return np.where(kept, levels, 0.0).astype(np.float32)


# Segmenting


@dataclass
class _Group:
    members: list[int]
    top: int
    left: int
    bottom: int
    right: int
    area: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def absorb(self, other: _Group) -> None:
        self.members += other.members
        self.top, self.left = min(self.top, other.top), min(self.left, other.left)
        self.bottom, self.right = max(self.bottom, other.bottom), max(self.right, other.right)
        self.area += other.area

    def distance(self, other: _Group) -> float:
        """The gap between the two boxes (0 when they overlap)."""
        across = max(0, max(self.left, other.left) - min(self.right, other.right))
        down = max(0, max(self.top, other.top) - min(self.bottom, other.bottom))
        return math.hypot(across, down)


def _overlap(start_a: int, end_a: int, start_b: int, end_b: int) -> int:
    return max(0, min(end_a, end_b) - max(start_a, start_b))


def _stacked(a: _Group, b: _Group) -> bool:
    """Pieces of one digit, overlapping horizontally: above each other (a 5's hat, the halves
    of a broken stroke), one inside the other, or together no wider than a digit (the loop
    and the tail of a faint 9)."""
    horizontal = _overlap(a.left, a.right, b.left, b.right)
    if horizontal < STACK_OVERLAP * min(a.width, b.width):
        return False
    vertical = _overlap(a.top, a.bottom, b.top, b.bottom)
    inside = vertical >= 0.7 * min(a.height, b.height) and horizontal >= 0.7 * min(a.width, b.width)
    gap = max(a.top, b.top) - min(a.bottom, b.bottom)
    beside = vertical > 0.5 * min(a.height, b.height)
    union_width = max(a.right, b.right) - min(a.left, b.left)
    union_height = max(a.bottom, b.bottom) - min(a.top, b.top)
    digit_shaped = union_width <= DIGIT_ASPECT * union_height
    near = gap <= STACK_GAP * max(a.height, b.height)
    return inside or (near and (not beside or digit_shaped))


def _merge_stacked(groups: list[_Group]) -> list[_Group]:
    """Stacked pieces (see `_stacked`) merged into groups, until no two groups are stacked.

    Groups are swept from left to right: only those overlapping horizontally can be stacked,
    so each pass compares a group with its horizontal neighbours alone.
    """
    merged = True
    while merged:
        merged = False
        groups.sort(key=lambda group: group.left)
        kept: list[_Group] = []
        absorbed = [False] * len(groups)
        for first_index, first in enumerate(groups):
            if absorbed[first_index]:
                continue
            for second_index in range(first_index + 1, len(groups)):
                second = groups[second_index]
                if second.left >= first.right:
                    break
                if not absorbed[second_index] and _stacked(first, second):
                    first.absorb(second)
                    absorbed[second_index] = merged = True
            kept.append(first)
        groups = kept
    return groups


def _join_fragments(groups: list[_Group]) -> list[_Group]:
    """Pieces much lower than the line of digits join the nearest digit, or go if none is near."""
    largest = max(group.area for group in groups)
    line_height = float(np.median([group.height for group in groups if group.area >= 0.2 * largest]))
    digits = [group for group in groups if group.height >= FRAGMENT_HEIGHT * line_height]
    fragments = [group for group in groups if group.height < FRAGMENT_HEIGHT * line_height]
    for fragment in fragments:
        nearest = min(digits, key=fragment.distance, default=None)
        if nearest is not None and fragment.distance(nearest) <= FRAGMENT_REACH * line_height:
            nearest.absorb(fragment)
    return digits


def _single_digit(groups: list[_Group]) -> list[_Group]:
    """The main digit: the largest group, with the groups near it."""
    main = max(groups, key=lambda group: group.area)
    others = [group for group in groups if group is not main]
    joined = True
    while joined:
        joined = False
        for other in others:
            if main.distance(other) <= SINGLE_REACH * max(main.height, main.width):
                main.absorb(other)
                others.remove(other)
                joined = True
                break
    return [main]


def _background_pieces(pieces: _Components, shape: tuple[int, int]) -> np.ndarray:
    """Which pieces are no strokes: too large, running along much of the image's rim, or wide
    pieces at the rim (the table around the paper, a shadow, a finger) with strokes far wider
    than those inside."""
    height, width = shape
    background = pieces.areas > MAX_INK_SHARE * height * width
    labels = pieces.labels
    rim = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    contact = np.bincount(rim, minlength=pieces.count + 1)[1:]
    background |= contact >= EDGE_CONTACT * rim.size
    widths = 2 * pieces.areas / np.maximum(_perimeters(pieces), 1)
    at_edge = contact > 0
    sides = np.maximum(pieces.bottoms - pieces.tops, pieces.rights - pieces.lefts)
    thinnest = np.minimum(pieces.bottoms - pieces.tops, pieces.rights - pieces.lefts)
    # Digits inside: shapes at least two strokes across both ways, not specks, lone strokes or
    # the dashes of a faint ruled line.
    inside = ~at_edge & ~background & (sides >= _min_digit_side(shape)) & (thinnest >= 2 * widths)
    if inside.any():
        background |= at_edge & (widths > EDGE_BLOB_WIDTH * widths[inside].max())
    return background


def _runs(mask: np.ndarray, axis: int, gap: int, length: int) -> np.ndarray:
    """The pixels of `mask` in straight runs along `axis` at least `length` long once gaps up to
    `gap` are closed; a run may continue past the image's edge. Running minima and maxima
    (closing, then opening) take the same time whatever the lengths."""
    gap, length = gap | 1, length | 1  # odd windows: centred, so opening and closing are exact
    values = mask.astype(np.uint8)
    closed = ndimage.maximum_filter1d(values, gap, axis=axis, mode="constant", cval=0)
    closed = ndimage.minimum_filter1d(closed, gap, axis=axis, mode="constant", cval=1)
    opened = ndimage.minimum_filter1d(closed, length, axis=axis, mode="constant", cval=1)
    opened = ndimage.maximum_filter1d(opened, length, axis=axis, mode="constant", cval=0)
    return opened.astype(bool) & mask


def _ruled_lines(mask: np.ndarray) -> np.ndarray:
    """The pixels of ruled lines and printed boxes: straight runs across nearly the whole image,
    thinner than the handwriting's strokes, that reach as far as the rest of the ink at both
    ends and well past it at one, or that stand along the image's rim with another such line
    (a box). A digit's own bar, such as a tight 7's, is as thick as its other strokes and has
    no partner along the opposite rim."""
    height, width = mask.shape
    lines = np.zeros_like(mask)
    if min(height, width) < SMALL_SIDE:
        return lines
    # Faint printed lines can come out dashed: gaps of a few pixels are closed first (wider
    # ones would bridge the digits of a number written across the image).
    gap = max(3, max(height, width) // 40)
    across = _runs(mask, 1, gap, math.ceil(LINE_SPAN * width))
    down = _runs(mask, 0, gap, math.ceil(LINE_SPAN * height))
    rest = mask & ~(across | down)
    bounds = _bounding(rest)
    if bounds is None:
        return lines
    rest_pieces = _components(rest)
    thickest = max(LINE_WIDTH * _stroke_width(_chosen(rest_pieces, [int(np.argmax(rest_pieces.areas))])), 2.0)
    rows, columns = bounds
    reaching, along_rim, rim_reaching = [], [], 0
    for runs, axis, (start, stop) in ((across, 1, (columns.start, columns.stop)), (down, 0, (rows.start, rows.stop))):
        size, other_size = mask.shape[axis], mask.shape[1 - axis]
        labels, _ = ndimage.label(runs)
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            line = labels[box] == index
            if line.sum() / (box[axis].stop - box[axis].start) > thickest:
                continue
            before, after = start - box[axis].start, box[axis].stop - stop
            at_rim = (box[1 - axis].start < LINE_OVERHANG * other_size
                      or box[1 - axis].stop > (1 - LINE_OVERHANG) * other_size)
            if min(before, after) >= -LINE_SHORTFALL * size and max(before, after) >= LINE_OVERHANG * size:
                reaching.append((box, line))
                rim_reaching += at_rim
            elif at_rim:
                along_rim.append((box, line))
    for box, line in reaching + (along_rim if len(along_rim) + rim_reaching >= 2 else []):
        lines[box] |= line
    return lines


def _min_digit_side(shape: tuple[int, ...]) -> float:
    """Pieces of ink whose longer side is shorter than this are no digit on their own."""
    return max(4, 0.01 * max(shape))


def _digit_sized(pieces: _Components, chosen: np.ndarray, min_side: float) -> bool:
    sides = np.maximum(pieces.bottoms - pieces.tops, pieces.rights - pieces.lefts)
    return bool((chosen & (sides >= min_side)).any())


def _one_digit(groups: list[_Group]) -> bool:
    """Whether the groups together are one digit: their box no wider than a digit is tall, and no
    two of them full-height strokes side by side with a clear gap (a narrow 11)."""
    top, bottom = min(group.top for group in groups), max(group.bottom for group in groups)
    left, right = min(group.left for group in groups), max(group.right for group in groups)
    height = bottom - top
    if right - left > ONE_DIGIT_ASPECT * height:
        return False
    tall = sorted((group for group in groups if group.height >= 0.7 * height), key=lambda group: group.left)
    return not any(second.left - first.right >= DIGIT_GAP * height for first, second in zip(tall, tall[1:]))


def _merged(groups: list[_Group]) -> _Group:
    whole = groups[0]
    for group in groups[1:]:
        whole.absorb(group)
    return whole


def segment(ink: np.ndarray, multi_digit: bool = True) -> list[Box]:
    """One box per digit in an ink map (as `to_grey_ink` gives), left to right.

    Connected pieces of ink (8-connected) smaller than 2% of the largest are
    noise. A piece covering over 40% of the image is background, not a stroke, and so is a
    piece that runs along half the image's rim or whose strokes at the rim are over three
    times as wide as those of the pieces inside (the table around a sheet of paper, a shadow,
    a finger) -- unless nothing digit-sized is left without them: then the image is a tight
    crop and they are the digit. Pieces that overlap horizontally and lie above each other, or
    together fit a digit's box (a 5's hat, a 4's second stroke, the halves of a broken
    stroke), are one digit; pieces much lower than the digits join the nearest one, or are
    dropped if none is near (stray dots). Pieces that together are no wider than one digit
    are one digit. With `multi_digit` off, the result is the largest digit with the pieces
    near it.
    """
    mask = np.asarray(ink) > 0
    pieces = _components(mask)
    if pieces.count == 0:
        return []
    min_side = _min_digit_side(mask.shape)
    candidates = ~_background_pieces(pieces, mask.shape)
    if not _digit_sized(pieces, candidates, min_side):
        candidates = np.ones(pieces.count, dtype=bool)
    largest = pieces.areas[candidates].max()
    chosen = np.flatnonzero(candidates & (pieces.areas >= NOISE_AREA * largest))
    chosen = chosen[np.argsort(-pieces.areas[chosen], kind="stable")[:MAX_PIECES]]
    groups = [
        _Group([index], int(pieces.tops[index]), int(pieces.lefts[index]), int(pieces.bottoms[index]),
               int(pieces.rights[index]), int(pieces.areas[index]))
        for index in chosen
    ]
    groups = _join_fragments(_merge_stacked(groups))
    groups = [group for group in groups if max(group.height, group.width) >= min_side]
    if not groups:
        return []
    if not multi_digit:
        groups = _single_digit(groups)
    elif len(groups) > 1 and _one_digit(groups):
        groups = [_merged(groups)]
    groups = sorted(groups, key=lambda group: group.area, reverse=True)[:MAX_DIGITS]
    groups.sort(key=lambda group: (group.left + group.right, group.top))
    boxes = []
    for group in groups:
        mask = _chosen(pieces, group.members, (slice(group.top, group.bottom), slice(group.left, group.right)))
        boxes.append(Box(group.left, group.top, group.right, group.bottom, mask))
    return boxes


# MNIST form


def _thicken(ink: np.ndarray, width_in_box: float) -> np.ndarray:
    """Thin strokes made about `TARGET_STROKE` box pixels wide, at 4x the box's resolution."""
    height, width = ink.shape
    shrink = THICKEN_SIDE / max(height, width)
    work = np.clip(_resize(ink, max(1, round(width * shrink)), max(1, round(height * shrink))), 0, 1)
    if work.max() > 0:
        work /= work.max()
    radius = int(round((TARGET_STROKE - width_in_box) * THICKEN_SIDE / DIGIT_BOX / 2))
    if radius < 1:
        return work
    return _grey_dilate(np.pad(work, radius), radius)


def _bounding(ink: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(ink.any(axis=1))
    columns = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)


def _sharpness(ink: np.ndarray) -> float:
    """0 for a digit at MNIST's own resolution (20 pixels), rising to 1 at three times that."""
    return min(max((max(ink.shape) - DIGIT_BOX) / (2 * DIGIT_BOX), 0.0), 1.0)


def _sharpen_edges(ink: np.ndarray) -> np.ndarray:
    """Steeper edges for sharply resolved digits: the ink levels from 0.5 - EDGE_SOFTNESS to
    0.5 + EDGE_SOFTNESS stretched over 0..1 (MNIST's digits were drawn from binary images, so
    their edges are only as soft as the anti-aliasing makes them, never blurred)."""
    softness = 0.5 + _sharpness(ink) * (EDGE_SOFTNESS - 0.5)
    if softness >= 0.5:
        return ink
    sharpened = np.clip((ink - (0.5 - softness)) / (2 * softness), 0.0, 1.0)
    return sharpened if sharpened.any() else ink  # all of it faint: keep it as it is


def _digit_region(ink: np.ndarray) -> tuple[float, float, float, float]:
    """The box (left, top, right, bottom) that MNIST's 20 pixels stand for, in `ink`'s pixels.

    MNIST scaled each digit's binary bounding box to 20 pixels. In a sharp image of a digit the
    binary shape is the ink at half level or more; the fainter rim around it is blur. A digit
    at about MNIST's own resolution is already anti-aliased into whole pixels, and its faint
    edge pixels are part of the shape: there the box of all its ink is taken, and in between
    the two are blended.
    """
    height, width = ink.shape
    half = _bounding(ink >= 0.5)
    if half is None:
        return (0.0, 0.0, float(width), float(height))
    sharpness = _sharpness(ink)
    rows, columns = half
    return (
        sharpness * columns.start,
        sharpness * rows.start,
        width + sharpness * (columns.stop - width),
        height + sharpness * (rows.stop - height),
    )


def to_mnist(ink_crop: np.ndarray) -> np.ndarray:
    """One digit's ink (float, 1 = ink) as MNIST has it: uint8 (28, 28), white on black.

    The digit's box (see `_digit_region`) is scaled with area averaging, aspect ratio kept,
    so that its longer side is 20 pixels, strokes thinner than nearly all of MNIST's are
    thickened first, and it is placed so that its centre of mass falls on the centre of the
    28x28 image, rounded to whole pixels as MNIST did. The brightest pixel becomes 255. No
    ink gives all zeros.
    """
    ink = np.clip(np.asarray(ink_crop, dtype=np.float32), 0.0, 1.0)
    result = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    bounds = _bounding(ink > 0)
    if bounds is None:
        return result.astype(np.uint8)
    ink = ink[bounds]
    region = _digit_region(ink)
    scale = DIGIT_BOX / max(region[2] - region[0], region[3] - region[1])
    width_in_box = _stroke_width(ink >= 0.5) * scale
    if width_in_box < THIN_STROKE:
        ink = _thicken(ink, width_in_box)
        ink = ink[_bounding(ink > 0.02)]
        region = _digit_region(ink)
        scale = DIGIT_BOX / max(region[2] - region[0], region[3] - region[1])
    ink = _sharpen_edges(ink)
    width = max(1, min(DIGIT_BOX, round((region[2] - region[0]) * scale)))
    height = max(1, min(DIGIT_BOX, round((region[3] - region[1]) * scale)))
    digit = np.clip(_resize(ink, width, height, region), 0.0, 1.0)
    peak = digit.max()
    if peak <= 0:
        return result.astype(np.uint8)
    digit /= peak
    centre_row, centre_column = _centre_of_mass(digit)
    top = min(max(math.floor(CENTRE - centre_row + 0.5), 0), IMAGE_SIDE - digit.shape[0])
    left = min(max(math.floor(CENTRE - centre_column + 0.5), 0), IMAGE_SIDE - digit.shape[1])
    result[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return np.round(result * 255).astype(np.uint8)


def _centre_of_mass(values: np.ndarray) -> tuple[float, float]:
    """(row, column) of the centre of mass of non-negative `values`, pixel centres at 0, 1, ..."""
    weights = values.astype(np.float64)
    mass = weights.sum()
    return (float(weights.sum(axis=1) @ np.arange(values.shape[0])) / mass,
            float(weights.sum(axis=0) @ np.arange(values.shape[1])) / mass)


def _already_mnist(pixels: np.ndarray) -> np.ndarray | None:
    """The pixels of an image that is an MNIST digit already, else None.

    That is 28x28 grey, white ink on a mostly black background, the ink's box no longer than
    DIGIT_BOX on either side and its centre of mass within MNIST_CENTRING of CENTRE, as every
    one of MNIST's 70,000 digits is: the dataset's own images, and drawings exported the way it
    stores them. They are read as they are, as `digitlab predict` reads a dataset; preparing
    them again would only blur them.
    """
    if pixels.shape != (IMAGE_SIDE, IMAGE_SIDE):
        return None
    ink = pixels > 0
    bounds = _bounding(ink)
    if bounds is None or np.count_nonzero(ink) > pixels.size // 2:
        return None
    if max(bounds[0].stop - bounds[0].start, bounds[1].stop - bounds[1].start) > DIGIT_BOX:
        return None
    centre_row, centre_column = _centre_of_mass(pixels)
    if max(abs(centre_row - CENTRE), abs(centre_column - CENTRE)) > MNIST_CENTRING:
        return None
    return pixels.copy()


def prepare(source: ImageSource, multi_digit: bool = True) -> Prepared:
    """An image file, its bytes or a PIL image as MNIST-style digits, left to right.

    With `multi_digit` (the default) every digit found is returned, so a photo of "2026" gives
    four; without it, the one main digit. An image without ink gives no digits (say "no digit
    found"; never guess). Raises DataError for an unreadable or oversized image.
    """
    pixels = _plain_grey_png(source)
    if pixels is None:
        image = open_image(source)
        size = image.size
        factor = max(1, math.ceil(max(size) / WORK_SIDE))
        pixels = np.asarray(image.reduce(factor) if factor > 1 else image)
    else:
        size, factor = (pixels.shape[1], pixels.shape[0]), 1
    ready = _already_mnist(pixels) if factor == 1 else None
    if ready is not None:
        box = Box(0, 0, IMAGE_SIDE, IMAGE_SIDE)
        return Prepared(_source_name(source), size, [ready], [box], ready.astype(np.float32) / 255)
    ink = to_grey_ink(pixels)
    boxes = segment(ink, multi_digit=multi_digit)
    digits = [to_mnist(box.crop(ink)) for box in boxes]
    across, down = size[0] / pixels.shape[1], size[1] / pixels.shape[0]
    original_boxes = [box.scaled(across, down, *size) for box in boxes]
    return Prepared(_source_name(source), size, digits, original_boxes, ink, 1 / factor)
