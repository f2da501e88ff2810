"""Cutting an ink map into digits: pieces of ink grouped into one box per digit, left to right."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from digitlab.preparation.operations import Pieces, connected_pieces, piece_perimeters, pieces_mask

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


def _background_pieces(pieces: Pieces, shape: tuple[int, int]) -> np.ndarray:
    """Which pieces are no strokes: too large, running along much of the image's rim, or wide
    pieces at the rim (the table around the paper, a shadow, a finger) with strokes far wider
    than those inside."""
    height, width = shape
    background = pieces.areas > MAX_INK_SHARE * height * width
    labels = pieces.labels
    rim = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    contact = np.bincount(rim, minlength=pieces.count + 1)[1:]
    background |= contact >= EDGE_CONTACT * rim.size
    widths = 2 * pieces.areas / np.maximum(piece_perimeters(pieces), 1)
    at_edge = contact > 0
    sides = np.maximum(pieces.bottoms - pieces.tops, pieces.rights - pieces.lefts)
    thinnest = np.minimum(pieces.bottoms - pieces.tops, pieces.rights - pieces.lefts)
    # Digits inside: shapes at least two strokes across both ways, not specks, lone strokes or
    # the dashes of a faint ruled line.
    inside = ~at_edge & ~background & (sides >= _min_digit_side(shape)) & (thinnest >= 2 * widths)
    if inside.any():
        background |= at_edge & (widths > EDGE_BLOB_WIDTH * widths[inside].max())
    return background


def _min_digit_side(shape: tuple[int, ...]) -> float:
    """Pieces of ink whose longer side is shorter than this are no digit on their own."""
    return max(4, 0.01 * max(shape))


def _digit_sized(pieces: Pieces, chosen: np.ndarray, min_side: float) -> bool:
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
    pieces = connected_pieces(mask)
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
        mask = pieces_mask(pieces, group.members, (slice(group.top, group.bottom), slice(group.left, group.right)))
        boxes.append(Box(group.left, group.top, group.right, group.bottom, mask))
    return boxes
