"""How fast `digitlab predict` reads folders of image files, against reading them one at a time.

Run: DIGITLAB_DATA=../shared/data/mnist python bench/batch_reading.py [--model RUN] [--scans 10000]
     [--photos 1000] [--workers N] [--seed S]

Two folders are generated with a fixed seed in a temporary folder, from MNIST's test digits,
in label folders 0..9:
- scans: grey PNGs of 16x16 to 32x32 pixels, dark ink on light paper, cropped tight around the
  digit, with noise;
- photos: 1600x1200 JPEGs of one digit on paper, under uneven light, with sensor noise.

Each folder is read the way `digitlab predict` reads it (`digitlab.recognition.batch.read_files`:
the images prepared by one process per core, chunks of files at a time, their digits predicted
1,024 at a time), and, as the baseline, the way it was read before: `Classifier.read`, one file
after the other, timed on `--baseline-scans` / `--baseline-photos` files spread over the
folder. The batch reader in one process, on the same files, shows how much of the gain is
batching alone. Printed: images per second of each and the speed-up, and the CPU time per image
(this process's and its workers'), which, unlike images per second, does not depend on what
else the machine is running. Without --model an untrained fast-convnet is used: reading speed
does not depend on what a model has learnt; with one, the share of files read as their
folder's label is printed too.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

PHOTO_SIZE = (1600, 1200)
CHUNK = 100  # images per task while generating


def render_scan(digit: np.ndarray, generator: np.random.Generator) -> bytes:
    """A PNG of a white-on-black MNIST digit as a small grey scan: dark on light, tight, noisy."""
    from PIL import Image

    rows, columns = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    crop = digit[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].astype(np.float32) / 255
    pad = int(generator.integers(1, 4))
    crop = np.pad(crop, pad)
    side = int(generator.integers(16, 33))
    scale = side / max(crop.shape)
    size = (max(4, round(crop.shape[1] * scale)), max(4, round(crop.shape[0] * scale)))
    ink = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR))
    paper, ink_level = generator.uniform(0.75, 0.97), generator.uniform(0.05, 0.35)
    page = paper - (paper - ink_level) * np.clip(ink, 0, 1)
    page = page + generator.normal(0, generator.uniform(0.01, 0.05), page.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(page * 255, 0, 255).astype(np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def render_photo(digit: np.ndarray, generator: np.random.Generator) -> bytes:
    """A phone-size JPEG of a white-on-black MNIST digit written on paper under uneven light."""
    from PIL import Image, ImageChops

    width, height = PHOTO_SIZE
    # Uneven light: a few brightness levels across the page, smoothly blended.
    corners = generator.uniform(0.5, 0.95, size=(3, 4)) * 255
    light = Image.fromarray(corners.astype(np.uint8), "L").resize(PHOTO_SIZE, Image.Resampling.BILINEAR)
    side = int(generator.integers(250, 800))
    ink = Image.fromarray(255 - digit, "L").resize((side, side), Image.Resampling.BICUBIC)
    paper = Image.new("L", PHOTO_SIZE, 255)
    paper.paste(ink, (int(generator.integers(0, width - side)), int(generator.integers(0, height - side))))
    page = ImageChops.multiply(light, paper)
    noise = Image.effect_noise(PHOTO_SIZE, float(generator.uniform(3, 10)))  # centred on 128
    page = ImageChops.add(page, noise, scale=1.0, offset=-128)
    tint = page.point(lambda value: value * generator.uniform(0.85, 0.98))
    buffer = io.BytesIO()
    Image.merge("RGB", (page, page, tint)).save(buffer, format="JPEG", quality=int(generator.integers(70, 95)))
    return buffer.getvalue()


def _write_images(task: tuple[str, str, np.ndarray, np.ndarray, int, int]) -> None:
    kind, folder, digits, labels, first, seed = task
    render = render_scan if kind == "scans" else render_photo
    suffix = ".png" if kind == "scans" else ".jpg"
    generator = np.random.default_rng(seed)
    for index, (digit, label) in enumerate(zip(digits, labels), start=first):
        (Path(folder) / str(label) / f"{index:05d}{suffix}").write_bytes(render(digit, generator))


def generate(pool: ProcessPoolExecutor, kind: str, folder: Path, images: np.ndarray, labels: np.ndarray,
             seed: int) -> None:
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True)
    tasks = [(kind, str(folder), images[start : start + CHUNK], labels[start : start + CHUNK], start,
              seed * 1_000_003 + start) for start in range(0, len(images), CHUNK)]
    list(pool.map(_write_images, tasks))


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker processes, once shut down)."""
    return sum(usage.ru_utime + usage.ru_stime for usage in (
        resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(function) -> tuple[object, float, float]:
    """`function()`, and the wall-clock and CPU seconds it took."""
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    result = function()
    return result, time.perf_counter() - started, _cpu_seconds() - cpu_started


def measure(classifier, name: str, folder: Path, baseline_count: int, workers: int, with_accuracy: bool) -> None:
    from digitlab.recognition.batch import image_files, label_accuracy, read_files, status_counts

    files = image_files([folder])
    # The baseline's files: spread over the folder, since it is sorted by label.
    sample = files[:: max(1, len(files) // baseline_count)][:baseline_count]
    _, old_seconds, old_cpu = timed(lambda: [classifier.read(file.path) for file in sample])
    _, batched_seconds, batched_cpu = timed(lambda: read_files(classifier.predict_function, sample, workers=1))
    results, parallel_seconds, parallel_cpu = timed(
        lambda: read_files(classifier.predict_function, files, workers=workers))

    old = _rate(len(sample), old_seconds)
    rows = [
        ("one at a time, Classifier.read (baseline)", len(sample), old_seconds, old_cpu),
        ("batched, in this process", len(sample), batched_seconds, batched_cpu),
        (f"batched, {workers} worker processes", len(files), parallel_seconds, parallel_cpu),
    ]
    counts = ", ".join(f"{status} {count:,}" for status, count in status_counts(results).items())
    print(f"\n{name}: {len(files):,} files ({counts})")
    for label, count, seconds, cpu in rows:
        rate = _rate(count, seconds)
        print(f"  {label:42} {rate:8.1f} images/s {rate / old:5.1f}x   {1000 * cpu / count:6.1f} CPU ms/image   "
              f"({count:,} files, {seconds:.1f} s)")
    if with_accuracy:
        print(f"  read as their folder's label: {label_accuracy(results):.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model file or run folder (default: an untrained fast-convnet)")
    parser.add_argument("--scans", type=int, default=10_000, help="small scans generated (default 10,000)")
    parser.add_argument("--photos", type=int, default=1_000, help="1600x1200 photos generated (default 1,000)")
    parser.add_argument("--baseline-scans", type=int, default=500, help="scans read one at a time (500)")
    parser.add_argument("--baseline-photos", type=int, default=30, help="photos read one at a time (30)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    import digitlab
    from digitlab.inference.classifier import Classifier, load_model

    started = time.perf_counter()
    test = digitlab.load("mnist:test")
    generator = np.random.default_rng(arguments.seed)
    chosen = {kind: generator.choice(len(test), size=min(count, len(test)), replace=count > len(test))
              for kind, count in (("scans", arguments.scans), ("photos", arguments.photos))}
    if arguments.model:
        classifier = load_model(arguments.model)
    else:
        classifier = Classifier(digitlab.models.create("fast-convnet"))
    classifier.predict_function(test.images[:1])  # the first call sets the model up: not timed
    with tempfile.TemporaryDirectory(prefix="digitlab-batch-bench-") as temporary:
        generating = time.perf_counter()
        with ProcessPoolExecutor(arguments.workers, mp_context=get_context("spawn")) as pool:
            for kind, indices in chosen.items():
                generate(pool, kind, Path(temporary) / kind, test.images[indices], test.labels[indices],
                         arguments.seed)
        print(f"generated {arguments.scans:,} scans and {arguments.photos:,} photos in "
              f"{time.perf_counter() - generating:.0f} s; model: {arguments.model or 'untrained fast-convnet'}; "
              f"{os.cpu_count()} CPUs")
        measure(classifier, "scans (16-32 px grey PNG)", Path(temporary) / "scans", arguments.baseline_scans,
                arguments.workers, arguments.model is not None)
        measure(classifier, "photos (1600x1200 JPEG)", Path(temporary) / "photos", arguments.baseline_photos,
                arguments.workers, arguments.model is not None)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
