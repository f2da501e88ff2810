"""How much fine-tuning on a person's own digits helps: simulated writers and scikit-learn's digits.

Run: DIGITLAB_DATA=../shared/data/mnist python bench/personal.py --model RUN [--writers 4] [--out personal.png]

Each simulated writer (`digitlab.data.writers.Writer`: a fixed, seeded slant, stroke width, width
and bend of each digit) writes MNIST test digits; scikit-learn's 1,797 bundled digits (43 writers,
8x8) are a second, real set. Every digit is rendered as a capture and saved as an image file:
the writers' as pen on paper, about 100x100 JPEG (bench/real_handwriting.py's `pen-100x100`),
scikit-learn's as their 8x8 PNGs. So fine-tuning reads them as `digitlab finetune RUN --data DIR`
reads a person's folder, and the rest are read as `digitlab predict` reads files.

For each set, `digitlab.finetune` learns from the first 5, 10, 20 and 50 examples of each digit
(nested: the 10 include the 5), then the model reads the set's other digits (`--other` of each),
never seen in fine-tuning. Printed: accuracy on those before and after, MNIST test accuracy before
and after, and the seconds each fine-tune took; baseline is the model before fine-tuning, in the
same run. With --out, a picture of accuracy against examples per digit.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from real_handwriting import pen_100, sklearn_8

EXAMPLE_COUNTS = (5, 10, 20, 50)


def _write_captures(folder: Path, captures: list[bytes], labels: np.ndarray) -> Path:
    """Captures as an image folder DIR/<label>/<n>.<suffix>, as a person's collection."""
    for index, (data, label) in enumerate(zip(captures, labels)):
        suffix = ".jpg" if data[:2] == b"\xff\xd8" else ".png"
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        (folder / str(label) / f"{index}{suffix}").write_bytes(data)
    return folder


def _split_per_digit(labels: np.ndarray, learn: int, other: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per digit, a shuffled order: its first `learn` for learning (nested sets for each count in
    EXAMPLE_COUNTS), the next `other` to read. Returns (learning indices per count, other indices)."""
    generator = np.random.default_rng(seed)
    orders = [generator.permutation(np.flatnonzero(labels == digit)) for digit in range(10)]
    learning = [np.concatenate([order[:count] for order in orders]) for count in EXAMPLE_COUNTS if count <= learn]
    others = np.concatenate([order[learn : learn + other] for order in orders])
    return learning, others


def _writer_sets(test, writers: int, other: int, seed: int):
    from digitlab.data.writers import Writer

    largest = max(EXAMPLE_COUNTS)
    for number in range(writers):
        writer = Writer.drawn(seed + number)
        learning, others = _split_per_digit(test.labels, largest, other, seed + number)
        chosen = np.concatenate([learning[-1], others])
        written = writer.write(test.subset(chosen))
        generator = np.random.default_rng([seed, number])
        captures = [pen_100(image.astype(np.float32) / 255, generator) for image in written.images]
        by_index = dict(zip(chosen.tolist(), captures))
        yield (writer.describe(), by_index, test.labels, learning, others)


def _sklearn_set(other: int, seed: int):
    from sklearn.datasets import load_digits

    bundled = load_digits()
    labels = bundled.target.astype(np.int64)
    largest = max(EXAMPLE_COUNTS)
    per_digit_available = min(np.bincount(labels))
    learning, others = _split_per_digit(labels, largest, min(other, per_digit_available - largest), seed)
    generator = np.random.default_rng(seed)
    by_index = {index: sklearn_8(bundled.images[index], generator) for index in np.concatenate([learning[-1], others])}
    return ("scikit-learn's 8x8 digits (43 writers)", by_index, labels, learning, others)


def _accuracy(classifier, folder: Path) -> float:
    import digitlab

    return float(classifier.evaluate(digitlab.load(folder)).accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the run folder (or .keras file) to fine-tune")
    parser.add_argument("--writers", type=int, default=4, help="simulated writers (default 4)")
    parser.add_argument("--other", type=int, default=40, help="other digits of each kind to read per set")
    parser.add_argument("--counts", default=",".join(map(str, EXAMPLE_COUNTS)),
                        help="examples per digit to fine-tune on, among 5,10,20,50")
    parser.add_argument("--no-sklearn", action="store_true", help="leave scikit-learn's digits out")
    parser.add_argument("--seed", type=int, default=100, help="first writer's seed (default 100)")
    parser.add_argument("--options", default="{}", help='digitlab.finetune options as JSON, e.g. \'{"epochs": 10}\'')
    parser.add_argument("--out", help="write a PNG of accuracy against examples per digit")
    arguments = parser.parse_args()

    import digitlab
    from digitlab.training.finetune import finetune

    wanted = {int(count) for count in arguments.counts.split(",")}
    options = json.loads(arguments.options)
    base = digitlab.load_model(arguments.model)
    mnist_test = digitlab.load("mnist:test", offline=True)
    base_mnist = float(base.evaluate(mnist_test).accuracy)
    sets = list(_writer_sets(mnist_test, arguments.writers, arguments.other, arguments.seed))
    if not arguments.no_sklearn:
        sets.append(_sklearn_set(arguments.other, arguments.seed))

    print(f"model {arguments.model}: MNIST test {base_mnist:.2%}")
    columns = " ".join(f"{f'{count}/digit':>8}" for count in EXAMPLE_COUNTS if count in wanted)
    print(f"{'set':56} {'before':>7} " + columns
          + f" {'MNIST@20':>9} {'s@20':>6}")
    curves = {}
    with tempfile.TemporaryDirectory() as scratch:
        for number, (name, by_index, labels, learning, others) in enumerate(sets):
            other_folder = _write_captures(Path(scratch) / f"set{number}-other", [by_index[i] for i in others],
                                           labels[others])
            before = _accuracy(base, other_folder)
            figures, mnist_after, seconds = [], None, None
            for count, indices in zip(EXAMPLE_COUNTS, learning):
                if count not in wanted:
                    continue
                folder = _write_captures(Path(scratch) / f"set{number}-learn{count}", [by_index[i] for i in indices],
                                         labels[indices])
                started = time.perf_counter()
                run = finetune(arguments.model, folder, runs_dir=Path(scratch) / "runs", verbose=False, **options)
                took = time.perf_counter() - started
                figures.append(_accuracy(digitlab.load_model(run.path), other_folder))
                if count == 20:
                    mnist_after, seconds = run.metrics.get("mnist_test_accuracy"), took
            curves[name] = (before, figures)
            mnist_text = f"{mnist_after:9.2%}" if mnist_after is not None else f"{'':9}"
            seconds_text = f"{seconds:6.1f}" if seconds is not None else f"{'':6}"
            print(f"{name[:56]:56} {before:7.1%} " + " ".join(f"{value:8.1%}" for value in figures)
                  + f" {mnist_text} {seconds_text}", flush=True)
    if arguments.out:
        _draw(arguments.out, curves, [count for count in EXAMPLE_COUNTS if count in wanted])


def _draw(path: str, curves: dict[str, tuple[float, list[float]]], counts: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for name, (before, figures) in curves.items():
        axis.plot([0, *counts], [before, *figures], marker="o", label=name)
    axis.set_xlabel("your examples of each digit fine-tuned on (0: the model as trained)")
    axis.set_ylabel("accuracy on the set's other digits")
    axis.set_xticks([0, *counts])
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    Path(path).write_bytes(buffer.getvalue())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
