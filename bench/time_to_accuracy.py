"""Time to 99.0% and 99.5% MNIST test accuracy: a recipe against the Keras example, same process.

Run: DIGITLAB_DATA=../shared/data/mnist python bench/time_to_accuracy.py --recipe fast --seeds 0,1,2,3,4

Training time counts only the optimisation steps: the first step (graph tracing and compilation)
is timed and reported on its own, and the test-set checks every `--check-every` steps are timed
and left out. The checks only report; nothing is chosen on the test set. Prints, per recipe, the
median over seeds of: time to 99.0%, time to 99.5%, final test accuracy, and the whole wall
time, then the ratio of the Keras example's time to 99.0% over the recipe's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

TARGETS = (0.990, 0.995)


def measure(recipe: str, seed: int, check_every: int, runs_dir: str, overrides: dict) -> dict:
    from digitlab.compute.backend import keras
    from digitlab.data.sources import load
    from digitlab.recipes.config import resolve
    from digitlab.training import fit as training

    keras_module = keras()
    test = load("mnist:test")

    class Stopwatch(keras_module.callbacks.Callback):
        """Training seconds at each check, with the first step and the checks taken out.

        Keras calls the batch hooks once per execution of `steps_per_execution` steps; `batch`
        is the index of the execution's last step in the epoch.
        """

        def __init__(self):
            super().__init__()
            self.training_seconds = 0.0
            self.first_step_seconds = None
            self.uncounted_steps = 0  # the first execution's steps after the first
            self.step_started = None
            self.steps = 0
            self.epoch_first_step = 0
            self.reached: dict[float, float] = {}
            self.accuracies: list[tuple[float, float]] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_first_step = self.steps

        def on_train_batch_begin(self, batch, logs=None):
            self.step_started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            elapsed = time.perf_counter() - self.step_started
            steps_before = self.steps
            self.steps = self.epoch_first_step + batch + 1
            executed = self.steps - steps_before
            if self.first_step_seconds is None:
                # The first call traces and compiles; its other steps are counted at the next
                # call's pace.
                self.first_step_seconds = elapsed
                self.uncounted_steps = executed - 1
            else:
                self.training_seconds += elapsed * (1 + self.uncounted_steps / executed)
                self.uncounted_steps = 0
            if self.steps // check_every > steps_before // check_every:
                self.check()

        def on_epoch_end(self, epoch, logs=None):
            if self.steps % check_every:
                self.check()

        def check(self):
            probabilities = self.model.predict(test.images, batch_size=2048, verbose=0)
            accuracy = float((probabilities.argmax(axis=1) == test.labels).mean())
            self.accuracies.append((self.training_seconds, accuracy))
            for target in TARGETS:
                if accuracy >= target and target not in self.reached:
                    self.reached[target] = self.training_seconds

    stopwatch = Stopwatch()
    config = resolve(recipe, overrides={"runs_dir": runs_dir, "seed": seed} | overrides)
    started = time.perf_counter()
    run = training.train(config, verbose=0, callbacks=[stopwatch])
    return {
        "reached": stopwatch.reached,
        "final": run.metrics["test_accuracy"],
        "training": stopwatch.training_seconds,
        "first_step": stopwatch.first_step_seconds,
        "wall": time.perf_counter() - started,
    }


def median_or_none(values: list[float | None]) -> float | None:
    # A seed that never reaches a target counts as infinitely slow for the median.
    finite = sorted(np.inf if value is None else value for value in values)
    middle = statistics.median(finite)
    return None if middle == np.inf else middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--baseline", default="keras-example", help="'none' skips it")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--check-every", type=int, default=50, help="steps between test checks")
    parser.add_argument("--baseline-seeds", default=None, help="default: the same seeds")
    arguments = parser.parse_args()

    from digitlab.compute.backend import keras

    keras()
    runs_dir = tempfile.mkdtemp(prefix="digitlab-tta-")
    seeds = [int(seed) for seed in arguments.seeds.split(",")]
    baseline_seeds = [int(seed) for seed in (arguments.baseline_seeds or arguments.seeds).split(",")]
    results = {}
    plan = [(arguments.recipe, seeds)] + (
        [(arguments.baseline, baseline_seeds)] if arguments.baseline != "none" else []
    )
    for recipe, recipe_seeds in plan:
        results[recipe] = []
        for seed in recipe_seeds:
            figures = measure(recipe, seed, arguments.check_every, runs_dir, {})
            results[recipe].append(figures)
            reached = ", ".join(f"{target:.1%} at {seconds:.1f} s" for target, seconds in figures["reached"].items())
            print(f"{recipe} seed {seed}: final {figures['final']:.2%}; {reached or 'no target reached'}; "
                  f"training {figures['training']:.1f} s, first step {figures['first_step']:.1f} s, "
                  f"wall {figures['wall']:.0f} s", flush=True)

    print("\nMNIST, median over seeds, training seconds (first step excluded)")
    print(f"{'recipe':16} {'to 99.0%':>9} {'to 99.5%':>9} {'final':>7} {'first step':>10} {'wall':>7}")
    medians = {}
    for recipe, rows in results.items():
        to_990 = median_or_none([row["reached"].get(0.990) for row in rows])
        to_995 = median_or_none([row["reached"].get(0.995) for row in rows])
        medians[recipe] = to_990

        def show(value: float | None) -> str:
            return "never" if value is None else f"{value:.1f}"

        print(f"{recipe:16} {show(to_990):>9} {show(to_995):>9} {statistics.median(r['final'] for r in rows):7.2%} "
              f"{statistics.median(r['first_step'] for r in rows):10.1f} "
              f"{statistics.median(r['wall'] for r in rows):7.0f}")
    if medians[arguments.recipe] and medians.get(arguments.baseline):
        print(f"{arguments.baseline} / {arguments.recipe} time to 99.0%: "
              f"{medians[arguments.baseline] / medians[arguments.recipe]:.1f}x")


if __name__ == "__main__":
    main()
