"""Each seed notebook's recipe, run as its notebook ran it on real MNIST, against its notebook's figure.

Run: DIGITLAB_DATA=../shared/data/mnist python bench/notebook_recipes.py [--recipes a,b] [--seeds 0,1,2]
Prints, per recipe and seed: the notebook's test accuracy, the floor (0.3 points below it, or
99.0% for three-conv-batchnorm), the test accuracy reached, epochs, training time and whole wall
time; with several seeds, also the median. The epoch kept is chosen on a validation split of the
training data (lowest validation loss), never on the test set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

# The notebook's reported test accuracy and the floor digitlab must reach.
NOTEBOOK_FIGURES = {
    "three-conv-batchnorm": (None, 0.990),
    "locally-connected": (0.9764, 0.973),
    "tiny-convnet": (0.9776, 0.974),
    "four-conv-augmented": (0.9944, 0.991),
    "five-conv-rmsprop": (0.9754, 0.972),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipes", default=",".join(NOTEBOOK_FIGURES))
    parser.add_argument("--runs-dir", default=None, help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; several give a median")
    arguments = parser.parse_args()

    from digitlab.compute.backend import keras
    from digitlab.recipes.config import resolve
    from digitlab.training.fit import train

    keras()
    runs_dir = arguments.runs_dir or tempfile.mkdtemp(prefix="digitlab-bench-")
    seeds = [int(seed) for seed in arguments.seeds.split(",")]
    rows = []
    for recipe in arguments.recipes.split(","):
        for seed in seeds:
            started = time.perf_counter()
            run = train(resolve(recipe, overrides={"runs_dir": runs_dir, "seed": seed}), verbose=0)
            wall = time.perf_counter() - started
            rows.append((recipe, str(seed), run.metrics["test_accuracy"], len(run.history),
                         run.metrics["training_seconds"], wall))
            print(f"{recipe} seed {seed}: test accuracy {run.metrics['test_accuracy']:.4f} in {wall:.0f} s "
                  f"({run.path})", flush=True)
        if len(seeds) > 1:
            mine = [row for row in rows if row[0] == recipe]
            rows.append((recipe, "median", *(statistics.median(row[index] for row in mine) for index in (2, 3, 4, 5))))

    print(f"\nMNIST test accuracy of the notebook recipes ({os.cpu_count()} CPU cores)")
    print(f"{'recipe':24} {'seed':>6} {'notebook':>9} {'floor':>7} {'digitlab':>9} {'epochs':>6} "
          f"{'train s':>8} {'wall s':>7}  result")
    for recipe, seed, accuracy, epochs, training, wall in rows:
        notebook, floor = NOTEBOOK_FIGURES.get(recipe, (None, None))
        shown = f"{notebook:.2%}" if notebook else "-"
        verdict = "-" if floor is None else ("meets" if accuracy >= floor else "BELOW")
        floor_text = f"{floor:.1%}" if floor else "-"
        print(f"{recipe:24} {seed:>6} {shown:>9} {floor_text:>7} {accuracy:9.2%} {epochs:6.0f} {training:8.0f} "
              f"{wall:7.0f}  {verdict}")


if __name__ == "__main__":
    main()
