"""How well a model reads handwriting captured in other ways than MNIST's, against the digits given directly.

Run: DIGITLAB_DATA=../shared/data/mnist python bench/real_handwriting.py --model RUN [--limit N]

Five kinds of capture, each written to an image file in memory and read back through
`digitlab.preparation.prepare`, as `digitlab predict` reads a file:

- `sklearn-8x8`: scikit-learn's bundled digits (1,797 digits, 8x8, from 43 writers), either
  polarity;
- `tight-16x16`: MNIST test digits as tight 16x16 grey crops, the digit filling its box, either
  polarity, with scanner noise;
- `binary-16x16`: thresholded to black and white and stretched to fill a 16x16 box (aspect ratio
  lost), dark on light;
- `pencil-28x28`: faint grey pencil on light paper, off-centre and at random sizes in 28x28, with
  grain and specks;
- `pen-100x100`: crops of pen on paper about 100x100, black or blue ink, some with a ruled line
  or a form's box around the digit, saved as JPEG.

Each is printed next to a naive baseline (the image resized to 28x28, inverted if light) and,
for MNIST's kinds, the model on the same 28x28 digits given directly. A reading counts as right
only when it is exactly the one right digit: no digit or two digits are wrong.

`--digits test` (the default) renders MNIST's test digits: the figures to report. Options are
chosen with `--digits validation` instead: the run's own validation split, MNIST training
digits the model never trained on, so the test set never steers a choice.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

CHUNK = 100  # captures per task sent to a worker


# Captures of a white-on-black digit (float ink in [0, 1], 28x28)


def _ink_box(ink: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(ink.max(axis=1) > 0.1)
    columns = np.flatnonzero(ink.max(axis=0) > 0.1)
    return ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def _resized(ink: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(ink.astype(np.float32), "F")
    method = Image.Resampling.BOX if width <= ink.shape[1] and height <= ink.shape[0] else Image.Resampling.BICUBIC
    return np.clip(np.asarray(image.resize((width, height), method), dtype=np.float32), 0, 1)


def _on_paper(ink: np.ndarray, paper: float, ink_level: float, noise: float, generator) -> np.ndarray:
    """Grey in [0, 1]: `ink` (1 = full) laid on paper of level `paper` in ink of level `ink_level`."""
    page = paper + (ink_level - paper) * ink
    return np.clip(page + generator.normal(0, noise, page.shape), 0, 1)


def _png(grey: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def tight_16(ink: np.ndarray, generator: np.random.Generator) -> bytes:
    """A 16x16 grey scan, the digit's longer side filling the box, either polarity."""
    box = _ink_box(ink)
    scale = 16 / max(box.shape)
    width, height = max(1, round(box.shape[1] * scale)), max(1, round(box.shape[0] * scale))
    crop = np.zeros((16, 16), dtype=np.float32)
    left, top = (16 - width) // 2, (16 - height) // 2
    crop[top : top + height, left : left + width] = _resized(box, width, height)
    if generator.random() < 0.5:
        return _png(_on_paper(crop, generator.uniform(0.8, 1.0), generator.uniform(0.0, 0.25), 0.02, generator))
    return _png(_on_paper(crop, generator.uniform(0.0, 0.15), generator.uniform(0.8, 1.0), 0.02, generator))


def binary_16(ink: np.ndarray, generator: np.random.Generator) -> bytes:
    """A 16x16 black-and-white scan, the digit stretched to fill the box both ways."""
    stretched = _resized(_ink_box(ink), 16, 16) >= generator.uniform(0.35, 0.6)
    return _png(np.where(stretched, 0.0, 1.0))


def pencil_28(ink: np.ndarray, generator: np.random.Generator) -> bytes:
    """28x28: faint grainy pencil, dark on light paper, at a random size and off-centre."""
    box = _ink_box(ink)
    side = int(generator.integers(14, 25))
    scale = side / max(box.shape)
    width, height = max(1, round(box.shape[1] * scale)), max(1, round(box.shape[0] * scale))
    crop = np.zeros((28, 28), dtype=np.float32)
    left = int(generator.integers(0, 28 - width + 1))
    top = int(generator.integers(0, 28 - height + 1))
    grain = np.clip(generator.normal(1.0, 0.25, (height, width)), 0.3, 1.3)
    crop[top : top + height, left : left + width] = _resized(box, width, height) * grain
    paper = generator.uniform(0.7, 0.95)
    faint = paper - generator.uniform(0.2, 0.5)
    grey = _on_paper(np.clip(crop, 0, 1), paper, faint, generator.uniform(0.005, 0.03), generator)
    for _ in range(int(generator.integers(0, 3))):  # photocopier specks
        row, column = generator.integers(0, 28, size=2)
        grey[row, column] = min(grey[row, column], faint + 0.1)
    return _png(grey)


def pen_100(ink: np.ndarray, generator: np.random.Generator) -> bytes:
    """About 100x100 RGB JPEG: a black or blue pen digit on paper, some with a ruled line or box."""
    from PIL import Image

    box = _ink_box(ink)
    side = int(generator.integers(50, 81))
    scale = side / max(box.shape)
    width, height = max(1, round(box.shape[1] * scale)), max(1, round(box.shape[0] * scale))
    pen = np.clip((_resized(box, width, height) - 0.3) / 0.3, 0, 1)  # sharp strokes, as a pen makes
    frame_width, frame_height = int(generator.integers(90, 111)), int(generator.integers(90, 111))
    page = np.zeros((frame_height, frame_width), dtype=np.float32)
    left = int(generator.integers(0, frame_width - width + 1))
    top = int(generator.integers(0, frame_height - height + 1))
    page[top : top + height, left : left + width] = pen
    extra = generator.random()
    if extra < 0.15:  # a ruled line under the digit
        row = min(frame_height - 2, top + height + int(generator.integers(0, 6)))
        page[row : row + 2, :] = np.maximum(page[row : row + 2, :], 0.5)
    elif extra < 0.3:  # a form's printed box around it
        thickness = 2
        page[:thickness, :] = page[-thickness:, :] = 0.6
        page[:, :thickness] = page[:, -thickness:] = 0.6
    paper = np.array([generator.uniform(0.85, 1.0)] * 3, dtype=np.float32)
    colour = np.array([0.1, 0.1, 0.12]) if generator.random() < 0.5 else np.array([0.1, 0.15, 0.55])
    rgb = paper + (colour - paper) * page[..., None]
    rgb = np.clip(rgb + generator.normal(0, 0.015, rgb.shape), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB").save(
        buffer, format="JPEG", quality=int(generator.integers(70, 95))
    )
    return buffer.getvalue()


def sklearn_8(pixels: np.ndarray, generator: np.random.Generator) -> bytes:
    """One of scikit-learn's 8x8 digits (0..16, 16 = ink) as an 8-bit PNG, either polarity."""
    ink = pixels.astype(np.float32) / 16
    return _png(1 - ink if generator.random() < 0.5 else ink)


MNIST_CAPTURES: dict[str, Callable] = {
    "tight-16x16": tight_16,
    "binary-16x16": binary_16,
    "pencil-28x28": pencil_28,
    "pen-100x100": pen_100,
}


# Reading


def _naive(data: bytes) -> np.ndarray:
    """The image resized to 28x28 and inverted if it is light: what a tutorial does."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    pixels = np.asarray(image)
    return 255 - pixels if pixels.mean() > 127 else pixels


def _prepare_chunk(task: tuple[str, list, int]) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """Render each item of the chunk and prepare it: (the digits found, the naive 28x28)."""
    from digitlab.preparation import prepare

    kind, items, seed = task
    generator = np.random.default_rng(seed)
    render = sklearn_8 if kind == "sklearn-8x8" else MNIST_CAPTURES[kind]
    results = []
    for item in items:
        data = render(item if kind == "sklearn-8x8" else item.astype(np.float32) / 255, generator)
        results.append((prepare(data).digits, _naive(data)))
    return results


def read_captures(pool, predict, kind: str, items: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The digit read from each capture (-1 when not exactly one digit) and the naive baseline's."""
    tasks = [(kind, items[start : start + CHUNK], seed * 1_000_003 + start) for start in range(0, len(items), CHUNK)]
    prepared = [result for chunk in pool.map(_prepare_chunk, tasks) for result in chunk]
    counts = np.array([len(digits) for digits, _ in prepared])
    read = np.full(len(items), -1)
    single = np.flatnonzero(counts == 1)
    if single.size:
        read[single] = predict(np.stack([prepared[index][0][0] for index in single])).argmax(axis=1)
    naive = predict(np.stack([baseline for _, baseline in prepared])).argmax(axis=1)
    return {"read": read, "naive": naive, "none": counts == 0, "several": counts > 1}


def draw_captures(path: str, mnist, sklearn, seed: int) -> None:
    """A PNG of six captures of each kind, each followed by the 28x28 digit prepared from it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from digitlab.preparation import prepare

    generator = np.random.default_rng(seed)
    kinds = [("scikit-learn 8x8", None), *MNIST_CAPTURES.items()]
    figure, axes = plt.subplots(len(kinds), 12, figsize=(12, 1.15 * len(kinds)))
    for row, (name, render) in enumerate(kinds):
        for column in range(6):
            index = row * 6 + column
            if render is None:
                data = sklearn_8(sklearn.images[index], generator)
            else:
                data = render(mnist.images[index].astype(np.float32) / 255, generator)
            digits = prepare(data).digits
            axes[row, 2 * column].imshow(Image.open(io.BytesIO(data)).convert("RGB"), interpolation="nearest")
            axes[row, 2 * column + 1].imshow(digits[0] if digits else np.zeros((28, 28)), cmap="gray",
                                             interpolation="nearest")
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle("Each capture, then the 28x28 digit digitlab prepares from it", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    print(f"wrote {path}")


def _validation_split(run: str):
    """The validation split a training run held out, drawn again from its config.toml."""
    from pathlib import Path

    from digitlab.runs.folder import run_config
    from digitlab.training.fit import prepare_data

    path = Path(run)
    return prepare_data(run_config(path if path.is_dir() else path.parent)).validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a .keras file or a training run folder")
    parser.add_argument("--limit", type=int, default=2_000, help="MNIST test digits per kind (default 2,000)")
    parser.add_argument("--kinds", default=",".join(["sklearn-8x8", *MNIST_CAPTURES]))
    parser.add_argument("--digits", choices=["test", "validation"], default="test",
                        help="MNIST digits to render: the test set, or the run's validation split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--picture", help="also draw some captures and what preparation makes of them, to this PNG")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    arguments = parser.parse_args()

    from sklearn.datasets import load_digits

    import digitlab

    classifier = digitlab.load_model(arguments.model)
    predict = classifier.predict_function
    digits = digitlab.load("mnist:test") if arguments.digits == "test" else _validation_split(arguments.model)
    count = min(arguments.limit, len(digits))
    images, labels = digits.images[:count], digits.labels[:count]
    direct = predict(images).argmax(axis=1) == labels
    sklearn = load_digits()

    if arguments.picture:
        draw_captures(arguments.picture, digits, sklearn, arguments.seed)
    print(f"model {arguments.model}; MNIST {arguments.digits} digits given directly: "
          f"{direct.mean():.2%} of {count:,}")
    print(f"{'kind':<14} {'images':>7} {'read':>8} {'naive':>8} {'direct':>8} {'no digit':>9} {'split':>6}")
    with ProcessPoolExecutor(arguments.workers, mp_context=get_context("spawn")) as pool:
        for kind in arguments.kinds.split(","):
            started = time.perf_counter()
            if kind == "sklearn-8x8":
                items, truth, direct_text = sklearn.images, sklearn.target, "—"
            else:
                items, truth, direct_text = images, labels, f"{direct.mean():.2%}"
            result = read_captures(pool, predict, kind, items, arguments.seed)
            print(f"{kind:<14} {len(items):>7,} {(result['read'] == truth).mean():>8.2%} "
                  f"{(result['naive'] == truth).mean():>8.2%} {direct_text:>8} {result['none'].mean():>9.2%} "
                  f"{result['several'].mean():>6.2%}   ({time.perf_counter() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
