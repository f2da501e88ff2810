"""How fast a Kaggle train.csv of 42,000 rows loads, against pandas' default read_csv.

Run: python bench/csv_load.py [--rows 42000] [--repeats 3]
The file is generated (MNIST-like sparsity: about 80% of pixels zero) in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from digitlab.data.dataset import Dataset
from digitlab.data.formats import kaggle_csv


def generated_dataset(rows: int, seed: int = 0) -> Dataset:
    generator = np.random.default_rng(seed)
    images = generator.integers(1, 256, size=(rows, 28, 28), dtype=np.uint8)
    images[generator.random(images.shape) < 0.8] = 0
    return Dataset(images, generator.integers(0, 10, size=rows), name="generated")


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def pandas_baseline(path: Path) -> None:
    frame = pd.read_csv(path)
    frame.drop(columns="label").to_numpy().reshape(-1, 28, 28)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=42000)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.csv"
        kaggle_csv.write(path, generated_dataset(arguments.rows))
        size = path.stat().st_size / 2**20
        digitlab_best, digitlab_median = best_of(arguments.repeats, lambda: kaggle_csv.read(path))
        pandas_best, pandas_median = best_of(arguments.repeats, lambda: pandas_baseline(path))
    print(f"Kaggle train.csv, {arguments.rows:,} rows, {size:.0f} MiB, best / median of {arguments.repeats}:")
    print(f"  digitlab (checked, uint8):   {digitlab_best:6.2f} s / {digitlab_median:6.2f} s")
    print(f"  pandas.read_csv (baseline):  {pandas_best:6.2f} s / {pandas_median:6.2f} s")
    print(f"  speed-up: {pandas_best / digitlab_best:.1f}x   target: <= 2 s on 2 cores "
          f"({'met' if digitlab_best <= 2 else 'NOT met'})")


if __name__ == "__main__":
    main()
