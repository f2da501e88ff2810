"""Fine-tuning a trained model on one person's digits: `digitlab finetune` and `digitlab.finetune`.

A model trained on MNIST reads MNIST's writers; a person whose 7s, 4s or slant differ from theirs
is misread the same way every time. A copy of the model is trained a little further, each batch
mixing three kinds of digits:

  the person's own      a few of each digit (augmented only if asked: FINETUNE_AUGMENTATION)
  in their style        MNIST training digits rewritten in the person's measured slant, width
                        and stroke, and bent toward their average shape of each digit
                        (`digitlab.training.writer_style`): many more examples of their hand
  replayed              MNIST training digits with the base model's own answers as targets, so
                        that it keeps reading everyone else as it did

A share of each digit's examples is held out: the epoch with the lowest held-out loss is kept.
Then as much of the change is kept as costs at most `guard` of accuracy on MNIST digits kept
back from all of this (weights moved part of the way back to the base model's), the temperature
is fitted again on those, and the held-out digits give the before and after figures. Having
chosen the epoch and the share, they read slightly better than new digits would.

The new run folder holds the model, `history.csv` (one row per epoch, `val_*` on the held-out
digits), `metrics.json` (before and after, on the held-out digits and on MNIST's test set),
config.toml (the base run's settings and a [finetune] table) and the report on the held-out digits.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.compute import backend
from digitlab.compute.devices import configure_threads
from digitlab.data.dataset import Dataset
from digitlab.errors import DigitlabError
from digitlab.outputs import write_text
from digitlab.recipes.config import Augmentation, ConfigError, TrainingConfig, to_toml
from digitlab.runs.folder import (
    CONFIG_FILE,
    HISTORY_FILE,
    finish_run,
    library_versions,
    new_folder,
    run_config,
)
from digitlab.runs.run import Run
from digitlab.shape import NUM_CLASSES

__all__ = ["FINETUNE_AUGMENTATION", "MIN_PER_DIGIT", "FinetuneSettings", "check_examples", "finetune"]

MIN_PER_DIGIT = 5  # examples of a digit: at least one to hold out and four to learn from
REPLAY_POOL = 20_000  # replayed digits to draw from: plenty for a few hundred steps
KEPT_DIGITS = 5000  # replayed training digits kept out of the replay: the guard, and the temperature's fit
BLEND_SHARES = (1.0, 0.8, 0.6, 0.4, 0.2)  # of the change fine-tuning made, tried from all of it down

# No augmentation by default: the digits rewritten in the person's style bring the variety. On
# bench/personal.py, rotating and shifting by 6 degrees and 5% read the writers no better (97.8-98.2%
# against 97.8-98.5% of their other digits) and cost more of MNIST (0.1-0.3 points against 0-0.2).
FINETUNE_AUGMENTATION = Augmentation()


@dataclass
class FinetuneSettings:
    """How `finetune` trains; saved under [finetune] in the run's config.toml."""

    holdout: float = 0.25  # share of each digit's examples held out to choose the epoch and report on
    epochs: int = 30  # at most; the epoch with the lowest held-out loss is kept
    steps_per_epoch: int = 20
    batch_size: int = 64  # the person's own, styled and replayed digits, mixed in the shares below
    learning_rate: float = 1e-3
    replay: str = "mnist"  # what is mixed in so the model keeps reading everyone else ("" for nothing)
    replay_share: float = 0.3  # of each batch
    styled: int = 200  # replayed digits of each kind rewritten in the person's style (0: none)
    styled_share: float = 0.4  # of each batch
    patience: int = 8  # epochs without a better held-out loss before stopping
    guard: float = 0.002  # the most accuracy on kept-back replayed digits the fine-tune may cost
    refit: bool = True  # once the epoch and share are chosen, learn from the held-out digits too
    seed: int = 0
    augmentation: Augmentation = dataclasses.field(default_factory=lambda: dataclasses.replace(FINETUNE_AUGMENTATION))

    def validate(self) -> None:
        if not 0 < self.holdout < 1:
            raise ConfigError(f"holdout must be between 0 and 1 (a share of each digit's examples), got {self.holdout}")
        for name in ("epochs", "steps_per_epoch", "batch_size", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        for name in ("replay_share", "styled_share"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.replay_share + self.styled_share >= 1:
            raise ConfigError("replay_share + styled_share must leave part of each batch for the person's own digits")
        if isinstance(self.styled, bool) or not isinstance(self.styled, int) or self.styled < 0:
            raise ConfigError(f"styled must be a whole number of at least 0, got {self.styled!r}")
        if not 0 <= self.guard < 1:
            raise ConfigError(f"guard must be in [0, 1) (a share of accuracy), got {self.guard}")
        self.augmentation.validate()


@dataclass
class _Parts:
    learn: Dataset
    held_out: Dataset
    replay: Dataset | None
    replay_targets: np.ndarray | None  # what the base model says of them: fine-tuning keeps to it
    styled: Dataset | None
    kept: Dataset | None  # replayed digits kept back: the guard against forgetting, and the temperature's fit
    mnist_test: Dataset | None


def _personal_digits(data: str | Path | Dataset, offline: bool) -> Dataset:
    if isinstance(data, Dataset):
        digits = data
    else:
        from digitlab.data.sources import load_parts

        parts = load_parts(data, offline=offline)
        digits = parts.get("train") or next(iter(parts.values()))
        if len(parts) > 1:
            others = [dataset for name, dataset in parts.items() if name != "train"]
            digits = Dataset(np.concatenate([digits.images, *(part.images for part in others)]),
                             np.concatenate([digits.labels, *(part.labels for part in others)])
                             if digits.is_labelled and all(part.is_labelled for part in others) else None,
                             name=str(data))
    if not digits.is_labelled:
        raise DigitlabError(f"{data}: these digits have no labels; put each in a folder named by its digit, "
                            "DIR/0/*.png ... DIR/9/*.png")
    return digits


def check_examples(folder: str | Path) -> None:
    """A DigitlabError unless an image folder DIR/0..9/ has enough examples to fine-tune on,
    found by listing it (no image is read)."""
    from digitlab.data.formats.image_folder import ordered_files

    _, labels = ordered_files(folder)
    if labels is None:
        raise DigitlabError(f"{folder}: no examples yet; save some of each digit first")
    _check_counts(np.bincount(labels, minlength=NUM_CLASSES), folder)


def _check_counts(counts: np.ndarray, source: Any) -> None:
    short = [f"{digit} has {count}" for digit, count in enumerate(counts) if 0 < count < MIN_PER_DIGIT]
    if short or not counts.any():
        have = "; ".join(short) if short else "there are none"
        raise DigitlabError(
            f"{source}: fine-tuning needs at least {MIN_PER_DIGIT} examples of each digit it learns "
            f"({have}); 20 of each digit is a good start"
        )


def _held_out_indices(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A seeded, stratified choice: `share` of each digit's examples, at least one."""
    generator = np.random.default_rng([seed, 7])
    chosen = []
    for digit in range(NUM_CLASSES):
        indices = np.flatnonzero(labels == digit)
        if len(indices):
            count = min(len(indices) - 1, max(1, round(share * len(indices))))
            chosen.append(generator.choice(indices, size=count, replace=False))
    return np.sort(np.concatenate(chosen))


def _replay_parts(source: str, offline: bool, say: Callable[[str], None]) -> dict[str, Dataset]:
    """The replayed source's parts; none, with a warning, when it cannot be had (MNIST offline)."""
    if not source:
        return {}
    from digitlab.data.sources import load_parts

    try:
        return load_parts(source, offline=offline)
    except DigitlabError as error:
        say(f"warning: no replayed digits ({error}); fine-tuning on yours alone, so the model may "
            "forget other writers' digits and its MNIST accuracy is not checked")
        return {}


def _parts(digits: Dataset, base, settings: FinetuneSettings, offline: bool, say: Callable[[str], None]) -> _Parts:
    held = _held_out_indices(digits.labels, settings.holdout, settings.seed)
    learn_mask = np.ones(len(digits), dtype=bool)
    learn_mask[held] = False
    learn = digits.subset(np.flatnonzero(learn_mask), "yours-learn")
    held_out = digits.subset(held, "yours-held-out")
    replay = kept = mnist_test = None
    replay_parts = _replay_parts(settings.replay, offline, say)
    if replay_parts:
        replay_all = replay_parts.get("train") or next(iter(replay_parts.values()))
        if not replay_all.is_labelled:
            raise ConfigError(f"the replayed digits ({settings.replay}) have no labels")
        mnist_test = replay_parts.get("test") if len(replay_parts) > 1 else None
        if mnist_test is not None and not mnist_test.is_labelled:
            mnist_test = None
        count = min(KEPT_DIGITS, len(replay_all) // 10)
        replay, kept = replay_all.split(count, seed=settings.seed) if count else (replay_all, None)
        if len(replay) > REPLAY_POOL:
            _, replay = replay.split(REPLAY_POOL, seed=settings.seed)
    styled = None
    if replay is not None and settings.styled and settings.styled_share > 0:
        from digitlab.training import writer_style

        sample = writer_style.sample_per_digit(replay, writer_style.STYLE_SAMPLE, settings.seed)
        styled = writer_style.restyled(replay, writer_style.measure(sample), writer_style.measure(learn),
                                       settings.styled, settings.seed, theirs=learn)
    replay_targets = None
    if replay is not None:
        replay_targets = np.asarray(base.predict(replay.images, batch_size=1024, verbose=0), dtype=np.float32)
    return _Parts(learn, held_out, replay, replay_targets, styled, kept, mnist_test)


def _mixed_batches(parts: _Parts, settings: FinetuneSettings):
    """Endless augmented batches: `replay_share` of each replayed, `styled_share` replayed in the
    person's style, the rest the person's own."""
    import tensorflow as tf

    from digitlab.training.pipeline import batch_augmenter

    def endless(dataset: Dataset, targets: np.ndarray, seed: int):
        return (tf.data.Dataset.from_tensor_slices((dataset.images, targets))
                .shuffle(len(dataset), seed=seed, reshuffle_each_iteration=True).repeat())

    streams = [(parts.learn, _one_hot(parts.learn.labels), 1.0)]
    if parts.replay is not None and settings.replay_share > 0:
        streams.append((parts.replay, parts.replay_targets, settings.replay_share))
    if parts.styled is not None and settings.styled_share > 0:
        streams.append((parts.styled, _one_hot(parts.styled.labels), settings.styled_share))
    own = 1.0 - sum(share for _, _, share in streams[1:])
    data = tf.data.Dataset.sample_from_datasets(
        [endless(dataset, targets, settings.seed + number) for number, (dataset, targets, _) in enumerate(streams)],
        weights=[own] + [share for _, _, share in streams[1:]], seed=settings.seed,
    )
    data = data.batch(settings.batch_size)
    if settings.augmentation.active:
        augment = batch_augmenter(settings.augmentation, settings.seed)
        data = data.enumerate().map(lambda index, batch: (augment(batch[0], index), batch[1]))
    return data.prefetch(tf.data.AUTOTUNE)


def _one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def _trainable_copy(model):
    """A copy of the model to train, its batch normalisation fixed: a person's few digits would
    shift the statistics the rest of the model relies on."""
    keras = backend.keras()
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return copy


def _epoch_log(keras, say: Callable[[str], None], epochs: int):
    class EpochLog(keras.callbacks.Callback):
        """Keeps each epoch's figures, and the weights of the epoch with the lowest held-out loss."""

        def __init__(self):
            super().__init__()
            self.rows: list[dict[str, float]] = []
            self.best_loss = float("inf")
            self.best_epoch = 0
            self.best_weights = None
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            row = {"epoch": epoch + 1, **{key: float(value) for key, value in (logs or {}).items()}}
            row["seconds"] = round(time.perf_counter() - self.started, 3)
            self.rows.append(row)
            better = row["val_loss"] < self.best_loss
            if better:
                self.best_loss, self.best_epoch = row["val_loss"], epoch + 1
                self.best_weights = self.model.get_weights()
            say(f"epoch {epoch + 1}/{epochs}: held-out accuracy {row['val_accuracy']:.1%}, "
                f"loss {row['val_loss']:.3f}{'  (best so far)' if better else ''}")

        @property
        def seconds(self) -> float:
            return self.rows[-1]["seconds"] if self.rows else 0.0

        @property
        def frame(self):
            import pandas as pd

            return pd.DataFrame(self.rows)

    return EpochLog()


def _blend(base, tuned, held_out: Dataset, guard: Dataset, allowed_drop: float) -> float:
    """Set `tuned` to base + share x (tuned - base) for the share of BLEND_SHARES that reads the
    held-out digits best (accuracy, then loss) while costing at most `allowed_drop` of accuracy on
    the `guard` digits; returns the share. Moving part of the way back toward the base model
    keeps most of what was learnt and gives back what was forgotten."""
    from digitlab.evaluation.metrics import evaluate

    tuned_weights = tuned.get_weights()
    floor = evaluate(base, guard).accuracy - allowed_drop
    best_key, best_share = None, BLEND_SHARES[-1]
    for share in BLEND_SHARES:
        tuned.set_weights(tuned_weights)
        _move(base, tuned, share)
        mine = evaluate(tuned, held_out)
        key = (evaluate(tuned, guard).accuracy >= floor, mine.accuracy, -mine.loss)
        if best_key is None or key > best_key:
            best_key, best_share = key, share
    tuned.set_weights(tuned_weights)
    _move(base, tuned, best_share)
    return best_share


def _move(base, tuned, share: float) -> None:
    """Set `tuned`'s weights to base + share x (tuned - base)."""
    if share != 1.0:
        pairs = zip(base.get_weights(), tuned.get_weights())
        tuned.set_weights([start + share * (end - start) for start, end in pairs])


def _base_model(model_or_run: str | Path):
    from digitlab.inference.keras_models import pixel_model
    from digitlab.inference.model_files import ModelError, OnnxModel, load_model

    model = load_model(model_or_run)
    if isinstance(model, OnnxModel):
        raise ModelError(model_or_run, "is an ONNX model; fine-tuning needs the Keras model "
                                       "(the run folder or its model.keras)")
    return pixel_model(model)


def _base_config(model_or_run: Path) -> TrainingConfig:
    """The base run's training settings, when it is a run folder; digitlab's defaults otherwise."""
    folder = model_or_run if model_or_run.is_dir() else model_or_run.parent
    if (folder / CONFIG_FILE).is_file():
        try:
            return run_config(folder)
        except DigitlabError:
            pass
    return TrainingConfig()


def finetune(
    model: str | Path,
    data: str | Path | Dataset,
    *,
    runs_dir: str | Path = "runs",
    offline: bool = False,
    verbose: bool = True,
    threads: int | None = None,
    say: Callable[[str], None] | None = None,
    **options: Any,
) -> Run:
    """Fine-tune a copy of a trained model on one person's digits; returns the new Run.

    model     a run folder, or a .keras / .h5 model file
    data      the person's digits: a folder DIR/0/*.png ... DIR/9/*.png (as the drawing page's
              collecting saves them, photos and scans welcome: each is prepared as
              `digitlab predict` prepares it), or any labelled source or Dataset; at least
              MIN_PER_DIGIT of each digit given, 20 of each recommended
    runs_dir  where the new run folder goes (runs/<time>-finetune/)
    verbose   print a line per epoch (to standard error)
    say       a function given those lines instead

    Options (see FinetuneSettings): holdout (0.25), epochs (30 at most), steps_per_epoch,
    batch_size, learning_rate, replay ("mnist"; "" for none), replay_share, styled,
    styled_share, patience, guard, seed, augmentation (an Augmentation or a dict of its fields).

    >>> run = digitlab.finetune("runs/20260101-120000-fast", "my-digits")
    >>> run.metrics["personal_accuracy_before"], run.metrics["personal_accuracy"]
    """
    from digitlab.inference.export import save_run_model

    started = time.perf_counter()
    settings = _settings(options)
    keras = backend.keras()
    configure_threads(threads)
    keras.utils.set_random_seed(settings.seed)
    if say is None:
        say = (lambda line: print(line, file=sys.stderr, flush=True)) if verbose else (lambda line: None)

    digits = _personal_digits(data, offline)
    _check_counts(digits.class_counts(), data)
    base = _base_model(model)
    parts = _parts(digits, base, settings, offline, say)
    replayed = f", each batch {settings.replay_share:.0%} {settings.replay}" if parts.replay is not None else ""
    say(f"fine-tuning on {len(parts.learn)} of your digits ({len(parts.held_out)} held out to choose "
        f"the epoch and report on){replayed}")
    before = _evaluations(base, {"personal": parts.held_out, "mnist_test": parts.mnist_test})
    tuned, log = _fit(base, parts, settings, say)
    share = 1.0
    if parts.kept is not None:
        share = _blend(base, tuned, parts.held_out, parts.kept, settings.guard)
        say(f"kept {share:.0%} of the change: the most that costs the kept-back replayed digits at most "
            f"{settings.guard:.1%} of accuracy")
    after = _evaluations(tuned, {"personal": parts.held_out})
    if settings.refit:
        say(f"learning from all {len(digits)} of your digits the same way, for the {log.best_epoch} epochs chosen")
        tuned = _refit(base, dataclasses.replace(parts, learn=digits), settings, log.best_epoch)
        _move(base, tuned, share)
    temperature = None
    if parts.kept is not None:
        from digitlab.evaluation import calibration

        temperature = calibration.calibrate(tuned, parts.kept)
    after |= _evaluations(tuned, {"mnist_test": parts.mnist_test})

    config = _base_config(Path(model))
    folder = new_folder(runs_dir, "finetune")
    source = data.name if isinstance(data, Dataset) else str(data)
    settings_table = {"base": str(Path(model).resolve()), "data": source, **dataclasses.asdict(settings)}
    write_text(folder / CONFIG_FILE, to_toml(config.as_dict() | {"finetune": settings_table,
                                                                 "versions": library_versions()}), force=True)
    save_run_model(tuned, folder, None if parts.mnist_test is None else parts.mnist_test.images[:200], say)
    history = log.frame
    write_text(folder / HISTORY_FILE, history.to_csv(index=False), force=True)
    metrics: dict[str, Any] = {
        "recipe": "finetune", "base": settings_table["base"], "model": tuned.name,
        "personal_digits": len(digits), "learned_from": len(parts.learn), "held_out": len(parts.held_out),
        "best_epoch": log.best_epoch, "epochs_run": len(log.rows), "kept_share": share,
        "refit_on_all": settings.refit,
        "training_seconds": round(log.seconds, 2),
        "temperature": None if temperature is None else round(temperature, 6),
        **{f"{name}_accuracy_before": round(float(evaluation.accuracy), 6) for name, evaluation in before.items()},
    }
    details = {"base model": str(model), "your digits": f"{len(digits)} ({len(parts.held_out)} held out)",
               "replayed": settings.replay or "nothing", "best epoch": f"{log.best_epoch} of {len(log.rows)}",
               "change kept": f"{share:.0%}"}
    summary = []
    for name, label in (("personal", "your held-out digits"), ("mnist_test", "MNIST test")):
        if name in after:
            details[label] = f"{before[name].accuracy:.2%} before, {after[name].accuracy:.2%} after"
            summary.append(f"{label}: {details[label]}")
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    finish_run(folder, metrics, after, {"personal": parts.held_out, "mnist_test": parts.mnist_test},
               history, f"digitlab fine-tune {folder.name}", details, shown="personal")
    say("; ".join(summary))
    return Run(folder, config, tuned, history, metrics,  # finish_run has added the accuracies
               evaluation=after["personal"], evaluation_data=parts.held_out)


def _evaluations(model, datasets: dict[str, Dataset | None]) -> dict[str, Any]:
    """The model evaluated on each dataset given (None: there is none)."""
    from digitlab.evaluation.metrics import evaluate

    return {name: evaluate(model, dataset) for name, dataset in datasets.items() if dataset is not None}


def _fit(base, parts: _Parts, settings: FinetuneSettings, say: Callable[[str], None]):
    """A copy of `base` trained on the mixed batches, at its epoch of lowest held-out loss; and the log."""
    keras = backend.keras()
    tuned = _compiled_copy(base, settings)
    log = _epoch_log(keras, say, settings.epochs)
    stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings.patience)
    tuned.fit(_mixed_batches(parts, settings), epochs=settings.epochs, steps_per_epoch=settings.steps_per_epoch,
              validation_data=(parts.held_out.images, _one_hot(parts.held_out.labels)),
              callbacks=[log, stopping], verbose=0, shuffle=False)  # the batches are shuffled already
    tuned.set_weights(log.best_weights)
    return tuned, log


def _refit(base, parts: _Parts, settings: FinetuneSettings, epochs: int):
    """A copy of `base` trained on the mixed batches for `epochs` epochs, without holding out."""
    backend.keras().utils.set_random_seed(settings.seed)
    tuned = _compiled_copy(base, settings)
    tuned.fit(_mixed_batches(parts, settings), epochs=epochs, steps_per_epoch=settings.steps_per_epoch, verbose=0,
              shuffle=False)
    return tuned


def _compiled_copy(base, settings: FinetuneSettings):
    keras = backend.keras()
    tuned = _trainable_copy(base)
    tuned.compile(optimizer=keras.optimizers.Adam(settings.learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    return tuned


def _settings(options: dict[str, Any]) -> FinetuneSettings:
    names = {field.name for field in dataclasses.fields(FinetuneSettings)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(f"finetune got an unknown option {unknown[0]!r}; "
                          f"options are: {', '.join(sorted(names))}")
    augmentation = options.get("augmentation")
    if isinstance(augmentation, dict):
        try:
            options = {**options, "augmentation": Augmentation(**augmentation)}
        except TypeError as error:
            raise ConfigError(f"augmentation: {error}") from None
    settings = FinetuneSettings(**options)
    settings.validate()
    return settings
