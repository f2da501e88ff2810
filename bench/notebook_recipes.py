"""Each seed notebook's recipe, run as its notebook ran it on real MNIST, against its notebook's figure.

Run: DIGITLAB_DATA=../shared/data/mnist python bench/notebook_recipes.py [--recipes a,b] [--seeds 0,1,2]
Each recipe trains as its notebook did, validation choice included: seed 000's on every image
with no validation, 001's and 002's holding out 20%, 003's holding out 30% and watching 400 of
them, 004's validating on the test set. Prints, per recipe and seed: the figure the notebook
printed (the accuracy it measured, on what) next to digitlab's on the same kind of data, then
MNIST test accuracy against its floor (0.3 points below the notebook's test figure, or 99.0% for
three-conv-batchnorm), epochs, training time and whole wall time; with several seeds, also the
median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

# Per recipe: its seed notebook, what the notebook's printed accuracy was measured on, that
# figure, and the floor of MNIST test accuracy digitlab must reach.
NOTEBOOK_FIGURES = {
    "three-conv-batchnorm": ("000", "training", 0.9919, 0.990),
    "tiny-convnet": ("001", "test", 0.9776, 0.974),
    "locally-connected": ("002", "validation", 0.9764, 0.973),
    "four-conv-augmented": ("003", "validation", 0.9944, 0.991),
    "five-conv-rmsprop": ("004", "test", 0.9754, 0.972),
}


def measured(run, kind: str) -> float:
    """The run's accuracy on the kind of data its notebook measured."""
    if kind == "training":
        return float(run.history["accuracy"].iloc[-1])
    return run.metrics[f"{kind}_accuracy"]


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
            same_kind = measured(run, NOTEBOOK_FIGURES[recipe][1]) if recipe in NOTEBOOK_FIGURES else float("nan")
            rows.append((recipe, str(seed), same_kind, run.metrics["test_accuracy"], len(run.history),
                         run.metrics["training_seconds"], wall))
            print(f"{recipe} seed {seed}: test accuracy {run.metrics['test_accuracy']:.4f} in {wall:.0f} s "
                  f"({run.path})", flush=True)
        if len(seeds) > 1:
            mine = [row for row in rows if row[0] == recipe]
            rows.append((recipe, "median",
                         *(statistics.median(row[index] for row in mine) for index in (2, 3, 4, 5, 6))))

    print(f"\nThe notebook recipes as their notebooks ran them ({os.cpu_count()} CPU cores)")
    print(f"{'recipe':22} {'seed':>6} {'notebook':>5} {'measured on':>11} {'notebook':>9} {'digitlab':>9} "
          f"{'MNIST test':>10} {'floor':>6} {'epochs':>6} {'train s':>8} {'wall s':>7}  result")
    for recipe, seed, same_kind, accuracy, epochs, training, wall in rows:
        number, kind, notebook, floor = NOTEBOOK_FIGURES.get(recipe, ("-", "-", None, None))
        shown = f"{notebook:.2%}" if notebook else "-"
        verdict = "-" if floor is None else ("meets" if accuracy >= floor else "BELOW")
        floor_text = f"{floor:.1%}" if floor else "-"
        print(f"{recipe:22} {seed:>6} {number:>5} {kind:>11} {shown:>9} {same_kind:9.2%} {accuracy:10.2%} "
              f"{floor_text:>6} {epochs:6.0f} {training:8.0f} {wall:7.0f}  {verdict}")


if __name__ == "__main__":
    main()
