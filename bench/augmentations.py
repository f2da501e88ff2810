"""What a recipe's augmentation does to digits, and what it costs the input pipeline.

Run: DIGITLAB_DATA=../shared/data/mnist python bench/augmentations.py [--recipe handwriting]
         [--out augmentations.png] [--batches 100] [--rounds 3] [--train-steps 0]

--out draws a grid: MNIST test digits as given, then each of the recipe's changes alone on every
image (each image its own random strength up to the recipe's value), then the whole augmentation
as training sees it (each change on the recipe's share of the images), in three draws. Look at
it to check that each change looks like a real capture.

Printed: the tf.data pipeline alone (shuffled batches of the recipe's size from the 60,000
training images): images per second and CPU time per image, with no augmentation, with the
recipe's rotation, zoom and shifts only (the baseline), with all of it, and with the baseline
plus each change on every image. Each setting is warmed up by 20 batches, then timed for
`--batches` batches in each of `--rounds` rounds, the settings taking turns; the figure is the
median round. With --train-steps N, also images per second training the recipe's model for N
steps fed by the first three pipelines, in the same rounds. Timings are of whichever CPU cores
this machine has; on a shared machine read them as upper bounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np

from digitlab.recipes.config import AUGMENTATION_RANGES

WARMUP_BATCHES = 20
COLUMNS = 12
MOVES = ("rotation", "zoom", "width_shift", "height_shift")  # done by Keras' layers, on every image
CHANGES = tuple(name for name in AUGMENTATION_RANGES if name not in MOVES)  # the writers' and captures'
WHOLE_DRAWS = 3


def changed_images(images: np.ndarray, augmentation, seed: int, batch_index: int = 0) -> np.ndarray:
    """`images` changed as the training pipeline changes one batch of them."""
    from digitlab.training.pipeline import batch_augmenter

    return batch_augmenter(augmentation, seed)(images, batch_index).numpy()


def grid_rows(images: np.ndarray, augmentation, seed: int) -> list[tuple[str, np.ndarray]]:
    """(title, images) per row: as given, each change alone on every image, the whole augmentation."""
    from digitlab.recipes.config import Augmentation

    rows = [("MNIST as given", images)]
    for name in CHANGES:
        value = getattr(augmentation, name)
        if value:
            alone = Augmentation(**{name: value}, elastic_smoothness=augmentation.elastic_smoothness, probability=1.0)
            rows.append((f"{name} {value:g}", changed_images(images, alone, seed)))
    for draw in range(WHOLE_DRAWS):
        rows.append((f"all, draw {draw + 1}", changed_images(images, augmentation, seed, batch_index=draw + 1)))
    return rows


def draw_grid(rows: list[tuple[str, np.ndarray]], path: str) -> None:
    from digitlab.data import pictures

    figure = pictures.InlineFigure(figsize=(COLUMNS * 0.8 + 1.6, len(rows) * 0.85), layout="constrained")
    axes = figure.subplots(len(rows), COLUMNS, squeeze=False)
    for row, (title, images) in enumerate(rows):
        for column in range(COLUMNS):
            axis = axes[row, column]
            axis.imshow(images[column], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
    pictures.save(figure, path, force=True)


def timed_rounds(titles: list[str], run, rounds: int) -> dict[str, tuple[float, float]]:
    """Per title: the median over `rounds` of `run(title)`'s wall and CPU seconds per item it
    reports, the titles taking turns within each round."""
    results: dict[str, list[tuple[float, float]]] = {title: [] for title in titles}
    for _ in range(rounds):
        for title in titles:
            wall, cpu = time.perf_counter(), time.process_time()
            items = run(title)
            results[title].append(((time.perf_counter() - wall) / items, (time.process_time() - cpu) / items))
    return {title: (statistics.median(wall for wall, _ in times), statistics.median(cpu for _, cpu in times))
            for title, times in results.items()}


def pipeline_streams(dataset, settings, batch_size: int, seed: int) -> dict[str, object]:
    """A warmed-up endless batch stream per (title, setting), by title."""
    from digitlab.training import pipeline

    streams = {}
    for title, setting in settings:
        stream = iter(pipeline.batches(dataset, batch_size, seed, setting))
        for _ in range(WARMUP_BATCHES):
            next(stream)
        streams[title] = stream
    return streams


def training_models(dataset, config, settings) -> dict[str, tuple[object, object]]:
    """The recipe's model and its batches per (title, setting), by title, compiled and warmed up."""
    from digitlab import models
    from digitlab.training import pipeline

    trained = {}
    for title, setting in settings:
        model = models.create(config.model, **config.model_options)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      steps_per_execution=config.steps_per_execution)
        data = pipeline.batches(dataset, config.batch_size, config.seed, setting)
        model.fit(data, steps_per_epoch=config.steps_per_execution * 4, epochs=1, verbose=0)
        trained[title] = (model, data)
    return trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="handwriting")
    parser.add_argument("--out", help="write the grid of changed digits to this PNG")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    import digitlab
    from digitlab.recipes.config import Augmentation, resolve

    config = resolve(arguments.recipe)
    augmentation = config.augmentation
    if arguments.out:
        test = digitlab.load("mnist:test")
        draw_grid(grid_rows(test.images[:COLUMNS], augmentation, arguments.seed), arguments.out)
        print(f"wrote {arguments.out}")

    train = digitlab.load("mnist:train")
    moves_only = Augmentation(**{name: getattr(augmentation, name) for name in MOVES})
    settings = [("no augmentation", None), ("rotation, zoom, shifts (baseline)", moves_only),
                (f"all of {arguments.recipe}", augmentation)]
    for name in CHANGES:
        if getattr(augmentation, name):
            settings.append((f"baseline + {name} on every image", dataclasses.replace(
                moves_only, **{name: getattr(augmentation, name)},
                elastic_smoothness=augmentation.elastic_smoothness, probability=1.0)))
    streams = pipeline_streams(train, settings, config.batch_size, arguments.seed)

    def draw_batches(title: str) -> int:
        for _ in range(arguments.batches):
            next(streams[title])
        return arguments.batches * config.batch_size

    print(f"input pipeline alone, batches of {config.batch_size}, median of {arguments.rounds} rounds "
          f"of {arguments.batches} batches:")
    for title, (wall, cpu) in timed_rounds(list(streams), draw_batches, arguments.rounds).items():
        print(f"  {title:45} {1 / wall:10,.0f} images/s {cpu * 1e6:8.0f} µs CPU per image")
    if arguments.train_steps:
        trained = training_models(train, config, settings[:3])

        def train_steps(title: str) -> int:
            model, data = trained[title]
            model.fit(data, steps_per_epoch=arguments.train_steps, epochs=1, verbose=0)
            return arguments.train_steps * config.batch_size

        print(f"training {config.model} for {arguments.train_steps} steps, median of {arguments.rounds} rounds:")
        for title, (wall, cpu) in timed_rounds(list(trained), train_steps, arguments.rounds).items():
            print(f"  {title:45} {1 / wall:10,.0f} images/s {cpu * 1e6:8.0f} µs CPU per image")


if __name__ == "__main__":
    main()
