"""The `digitlab` command: thin subcommands over the library's functions."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from digitlab import __version__
from digitlab.errors import INTERRUPTION_EXPLAINED, DigitlabError

app = typer.Typer(
    help="Train, understand and use handwritten-digit recognisers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Look at and convert digit data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
models_app = typer.Typer(help="The model zoo.", no_args_is_help=True)
app.add_typer(models_app, name="models")
recipes_app = typer.Typer(help="Training recipes (model + training options).", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")

# Output read by programs or saved to files is not cut at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 120)
error_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _shown(value: object) -> str:
    """A path, name or message as Rich prints it literally: a `[` in a user's text is no markup."""
    return escape(str(value))

SourceArgument = Annotated[
    str,
    typer.Argument(
        help="'mnist', an IDX file or folder, a .npz, a Kaggle .csv, an image folder or image; "
        "SOURCE:part picks one part (e.g. mnist:test)."
    ),
]
ModelArgument = Annotated[
    Path, typer.Argument(help="A .keras / .h5 / .onnx model file, a run folder or an ensemble folder.")
]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace existing output files.")]
TtaOption = Annotated[
    bool, typer.Option("--tta", help="Test-time augmentation: also predict each image shifted one pixel "
                       "up, down, left and right, and average (5 times the work).")
]


class _Settings:
    offline = False


def _version(value: bool) -> None:
    if value:
        console.print(f"digitlab {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    offline: Annotated[
        bool, typer.Option("--offline", help="Never download; use only local data (also DIGITLAB_OFFLINE=1).")
    ] = False,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    _Settings.offline = offline


def _load_parts(source: str):
    from digitlab.data.sources import load_parts

    return load_parts(source, offline=_Settings.offline)


@data_app.command("info")
def data_info(
    source: SourceArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Sizes, per-class counts and pixel statistics of a dataset."""
    from digitlab.data.summary import summarize

    summaries = {part: summarize(dataset) for part, dataset in _load_parts(source).items()}
    if as_json:
        print(json.dumps({part: summary.as_dict() for part, summary in summaries.items()}, indent=2))
        return
    origin = next(iter(summaries.values())).origin
    console.print(f"[bold]{_shown(source)}[/bold]  (from {_shown(Path(origin).parent) if origin else '?'})")
    sizes = Table("part", "images", "labels", "pixel mean", "pixel std", "min", "max", "ink")
    for part, summary in summaries.items():
        sizes.add_row(
            _shown(part), f"{summary.images:,}", "yes" if summary.labelled else "none",
            f"{summary.pixel_mean:.2f}", f"{summary.pixel_std:.2f}",
            str(summary.pixel_min), str(summary.pixel_max), f"{summary.ink_fraction:.1%}",
        )
    console.print(sizes)
    labelled = {part: summary for part, summary in summaries.items() if summary.labelled}
    if labelled:
        classes = Table("digit", *[str(digit) for digit in range(10)], title="images per class")
        for part, summary in labelled.items():
            classes.add_row(_shown(part), *[str(count) for count in summary.class_counts])
        console.print(classes)


@data_app.command("show")
def data_show(
    source: SourceArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG files.")] = Path("."),
    index: Annotated[int, typer.Option(help="Index of the single image to draw large.")] = 0,
    samples: Annotated[int, typer.Option(min=1, max=400, help="Images in the sample grid.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed for choosing the samples.")] = 0,
    force: ForceOption = False,
) -> None:
    """Write PNGs: a labelled sample grid, the class distribution and one image by index."""
    from digitlab.data import pictures
    from digitlab.data.sources import split_part

    parts = _load_parts(source)
    place, part = split_part(source)
    name = "-".join(filter(None, (Path(place).name or place, part)))
    first = next(iter(parts.values()))
    if not -len(first) <= index < len(first):
        raise DigitlabError(f"--index {index} is outside 0..{len(first) - 1} of {first.name}")
    figures = {
        out / f"{name}-samples.png": pictures.sample_grid(first, count=samples, seed=seed),
        out / f"{name}-image-{index}.png": pictures.single_image(first, index),
    }
    if any(dataset.is_labelled for dataset in parts.values()):
        figures[out / f"{name}-classes.png"] = pictures.class_distribution(list(parts.values()))
    from digitlab.outputs import check_new

    for path in figures:
        check_new(path, force)
    for path, figure in figures.items():
        pictures.save(figure, path, force)
        console.print(f"wrote {_shown(path)}")


@data_app.command("convert")
def data_convert(
    source: SourceArgument,
    destination: Annotated[Path, typer.Argument(help="Output file (.csv, .npz) or folder.")],
    to: Annotated[
        Optional[str], typer.Option(help="Output format: idx, csv, npz or png (else guessed from the name).")
    ] = None,
    kaggle: Annotated[
        bool, typer.Option("--kaggle", help="Write a test part without labels, as Kaggle's test.csv.")
    ] = False,
    force: ForceOption = False,
) -> None:
    """Convert between IDX, Kaggle CSV, npz and PNG folders."""
    from digitlab.data.convert import convert

    parts = _load_parts(source)
    written = convert(parts, destination, to=to, force=force, kaggle=kaggle)
    sizes = ", ".join(f"{part} {len(dataset):,}" for part, dataset in parts.items())
    console.print(f"wrote {_shown(written)} ({_shown(sizes)})")


def _keras_quietly() -> None:
    from digitlab.compute.backend import keras

    keras()


ModelFileOption = Annotated[
    Optional[Path], typer.Option("--model-file", help="A Python file that registers more models.")
]


def _models_with(model_file: Path | None):
    _keras_quietly()
    from digitlab import models

    if model_file is not None:
        models.load_user_models(model_file)
    return models


@models_app.command("list")
def models_list(model_file: ModelFileOption = None) -> None:
    """The registered models with their sizes."""
    models = _models_with(model_file)

    table = Table("model", "parameters", "layers")
    for name in models.names():
        table.add_row(_shown(name), f"{models.create(name).count_params():,}", _shown(models.describe(name)))
    console.print(table)


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="A name from `digitlab models list`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the diagram PNG.")] = Path("."),
    model_file: ModelFileOption = None,
    force: ForceOption = False,
) -> None:
    """Print a model's Keras summary and write its architecture diagram as PNG."""
    from digitlab.data import pictures
    from digitlab.evaluation import figures

    models = _models_with(model_file)
    model = models.create(name)
    model.summary(print_fn=lambda line, **_: console.print(line, markup=False, highlight=False))
    path = pictures.save(figures.model_diagram(model), out / f"{name}.png", force)
    console.print(f"wrote {_shown(path)}")


@recipes_app.command("list")
def recipes_list() -> None:
    """The recipes shipped with digitlab."""
    from digitlab.recipes.config import recipe_names, recipe_settings, recipe_summary

    table = Table("recipe", "model", "epochs", "batch", "optimizer", "schedule")
    for name in recipe_names():
        settings = recipe_settings(name)
        table.add_row(
            name, settings.get("model", ""), str(settings.get("epochs", "")), str(settings.get("batch_size", "")),
            settings.get("optimizer", ""), settings.get("schedule", "constant"),
        )
    console.print(table)
    for name in recipe_names():
        console.print(f"[bold]{_shown(name)}[/bold]: {_shown(recipe_summary(name))}", highlight=False)


@recipes_app.command("show")
def recipes_show(name: Annotated[str, typer.Argument(help="A recipe name.")]) -> None:
    """Print a recipe resolved over the defaults, as TOML."""
    from digitlab.recipes.config import resolve, to_toml

    print(to_toml(resolve(recipe=name).as_dict()), end="")


def _validation_value(text: str | None) -> float | int | str | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


RecipeOption = Annotated[Optional[str], typer.Option(help="Recipe name or .toml file (default fast; with "
                                                         "--model alone, the plain defaults; see "
                                                         "`digitlab recipes list`).")]
ConfigFileOption = Annotated[Optional[Path], typer.Option("--config", help="TOML file of options; overrides the "
                                                          "recipe.")]
DataOption = Annotated[Optional[str], typer.Option(help="Training data source (default mnist).")]
ValidationOption = Annotated[Optional[str], typer.Option(help="Validation fraction (0.1), count (5000) or source.")]
TestOption = Annotated[Optional[str], typer.Option(help="Labelled data to report on (default: the source's "
                                                       "test part).")]
EpochsOption = Annotated[Optional[int], typer.Option()]
StepsOption = Annotated[Optional[int], typer.Option(min=1, help="Batches per epoch (default: one pass).")]
BatchSizeOption = Annotated[Optional[int], typer.Option()]
LearningRateOption = Annotated[Optional[float], typer.Option(help="Initial (peak) learning rate.")]
ScheduleOption = Annotated[Optional[str], typer.Option(help="constant, exponential, plateau, cosine or one-cycle.")]
ThreadsOption = Annotated[Optional[int], typer.Option(min=1, help="CPU threads (default: all).")]
TrainLimitOption = Annotated[Optional[int], typer.Option(min=1, help="Train on a stratified subset of this many "
                                                              "images.")]
RayOption = Annotated[bool, typer.Option("--ray", help="Run on Ray: a local Ray started for the purpose, or the "
                                         "cluster of --ray-address (needs pip install \"digitlab\\[ray]\").")]
RayAddressOption = Annotated[Optional[str], typer.Option("--ray-address", help="The Ray cluster to run on, e.g. "
                                                         "ray://head:10001 or auto; implies --ray.")]


def _print_accuracies(path: Path, metrics: dict) -> None:
    figures = ", ".join(f"{key.replace('_', ' ')} {value:.2%}" for key, value in metrics.items()
                        if key.endswith("_accuracy") and isinstance(value, float))
    figures = figures or "no validation or test data to measure accuracy on"
    if metrics.get("test_is_validation"):
        figures += " (the test data is the validation data)"
    console.print(f"[bold]{_shown(path)}[/bold]: {figures}; {metrics['training_seconds']:.1f} s of training")
    if metrics.get("temperature") is not None:
        shown = "test" if "test_calibration_error" in metrics else "validation"
        console.print(f"calibrated: temperature {metrics['temperature']:.3f}; {shown} calibration error "
                      f"{metrics[f'{shown}_calibration_error_uncalibrated']:.2%} before, "
                      f"{metrics[f'{shown}_calibration_error']:.2%} after", highlight=False)


def _print_report_line(path: Path) -> None:
    from digitlab.evaluation.report import REPORT_NAME

    report = path / REPORT_NAME
    if report.is_file():
        console.print(f"report: {_shown(report)}")
    else:
        console.print("no report: it needs validation or test data")


def _training_options(validation: Optional[str], model_file: Optional[Path], **options: Any) -> dict[str, Any]:
    """The training options given on the command line, as TrainingConfig settings (those not
    given are left to the recipe)."""
    settings = {"validation": _validation_value(validation),
                "model_file": None if model_file is None else str(model_file), **options}
    return {name: value for name, value in settings.items() if value is not None}


@app.command("train")
def train_command(
    recipe: RecipeOption = None,
    config: ConfigFileOption = None,
    data: DataOption = None,
    validation: ValidationOption = None,
    test: TestOption = None,
    model: Annotated[Optional[str], typer.Option(help="Model name (see `digitlab models list`).")] = None,
    model_file: ModelFileOption = None,
    epochs: EpochsOption = None,
    steps_per_epoch: StepsOption = None,
    batch_size: BatchSizeOption = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adam, adamw, rmsprop or sgd.")] = None,
    learning_rate: LearningRateOption = None,
    schedule: ScheduleOption = None,
    rotation: Annotated[Optional[float], typer.Option(help="Augmentation: rotation range in degrees.")] = None,
    zoom: Annotated[Optional[float], typer.Option(help="Augmentation: zoom range (fraction).")] = None,
    width_shift: Annotated[Optional[float], typer.Option(help="Augmentation: horizontal shift (fraction).")] = None,
    height_shift: Annotated[Optional[float], typer.Option(help="Augmentation: vertical shift (fraction).")] = None,
    label_smoothing: Annotated[Optional[float], typer.Option()] = None,
    early_stopping: Annotated[Optional[int], typer.Option(
        help="Stop after this many epochs without improvement.")] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    threads: ThreadsOption = None,
    precision: Annotated[Optional[str], typer.Option(
        help="float32, mixed_bfloat16 (CPUs with AMX or AVX512_BF16, recent GPUs) or mixed_float16.")] = None,
    train_limit: TrainLimitOption = None,
    tensorboard: Annotated[Optional[bool], typer.Option("--tensorboard", help="Also write TensorBoard logs.")] = None,
    runs_dir: Annotated[Optional[str], typer.Option(help="Where run folders go (default runs/).")] = None,
    deterministic: Annotated[
        Optional[bool], typer.Option("--deterministic", help="Bit-identical results for the same seed and data.")
    ] = None,
    resume: Annotated[
        Optional[Path], typer.Option("--resume", help="Continue a stopped run folder from its last checkpoint.")
    ] = None,
    distribute: Annotated[
        Optional[bool], typer.Option("--distribute", help="Split each batch over all local GPUs "
                                     "(MirroredStrategy); DIGITLAB_CPU_DEVICES=N splits the CPU instead.")
    ] = None,
) -> None:
    """Train a model; writes runs/<time>-<recipe>/ with the model, history, figures and report."""
    from digitlab.training.api import train

    augmentation = {key: value for key, value in (
        ("rotation", rotation), ("zoom", zoom), ("width_shift", width_shift), ("height_shift", height_shift)
    ) if value is not None}
    overrides = _training_options(
        validation, model_file, data=data, test=test, model=model, epochs=epochs, steps_per_epoch=steps_per_epoch,
        batch_size=batch_size, optimizer=optimizer, learning_rate=learning_rate, schedule=schedule,
        label_smoothing=label_smoothing, early_stopping_patience=early_stopping, seed=seed, threads=threads,
        precision=precision, train_limit=train_limit, tensorboard=tensorboard, runs_dir=runs_dir,
        deterministic=deterministic, distribute=distribute,
    )
    if augmentation:
        overrides["augmentation"] = augmentation
    from digitlab.evaluation import report_process

    report_process.start()  # the report's pictures load and draw in a process of their own
    _keras_quietly()
    # With --resume any other option is refused by train(), rather than silently dropped.
    run = train(recipe, config_file=config, offline=_Settings.offline, resume=resume, **overrides)
    _print_accuracies(run.path, run.metrics)
    _print_report_line(run.path)


@app.command("ensemble")
def ensemble_command(
    members: Annotated[Optional[int], typer.Option(
        min=2, help="How many models (default 3; with --vary models, one per name).")] = None,
    vary: Annotated[str, typer.Option(
        help="How members differ: seed, bagging (each a bootstrap sample) or models.")] = "seed",
    models: Annotated[Optional[str], typer.Option(help="With --vary models: model names, separated by commas.")] = None,
    recipe: RecipeOption = None,
    config: ConfigFileOption = None,
    data: DataOption = None,
    validation: ValidationOption = None,
    test: TestOption = None,
    model: Annotated[Optional[str], typer.Option(help="Model name for every member (not with --vary models).")] = None,
    model_file: ModelFileOption = None,
    epochs: EpochsOption = None,
    steps_per_epoch: StepsOption = None,
    batch_size: BatchSizeOption = None,
    learning_rate: LearningRateOption = None,
    schedule: ScheduleOption = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the first member (member i gets seed + i).")] = None,
    threads: ThreadsOption = None,
    train_limit: TrainLimitOption = None,
    runs_dir: Annotated[Optional[str], typer.Option(help="Where the ensemble folder goes (default runs/).")] = None,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
) -> None:
    """Train an ensemble; writes runs/<time>-ensemble-<recipe>/ with members/, ensemble.json and a report."""
    from digitlab.training.ensembles import train_ensemble

    overrides = _training_options(
        validation, model_file, test=test, model=model, epochs=epochs, steps_per_epoch=steps_per_epoch,
        batch_size=batch_size, learning_rate=learning_rate, schedule=schedule, seed=seed, threads=threads,
        train_limit=train_limit,
    )
    names = None if models is None else [name.strip() for name in models.split(",") if name.strip()]
    _keras_quietly()
    ensemble = train_ensemble(
        members, recipe, data, vary, names, runs_dir, config_file=config, offline=_Settings.offline,
        ray=ray, ray_address=ray_address, **overrides,
    )
    _print_accuracies(ensemble.path, ensemble.metrics)
    shown = "test" if "test_accuracy" in ensemble.metrics else "validation"
    each = ", ".join(f"{value:.2%}" for value in ensemble.metrics.get(f"member_{shown}_accuracy", []))
    if each:
        console.print(f"members' {shown} accuracy: {each}")
    _print_report_line(ensemble.path)


@app.command("finetune")
def finetune_command(
    model: Annotated[Path, typer.Argument(help="The run folder (or .keras / .h5 file) to start from.")],
    data: Annotated[str, typer.Option(help="Your digits: a folder DIR/0/*.png ... DIR/9/*.png (photos and "
                                           "scans welcome), or any labelled source.")],
    holdout: Annotated[Optional[float], typer.Option(help="Share of each digit's examples held out to choose "
                                                          "the epoch and report on (default 0.25).")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="At most this many epochs (default 30).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Adam's learning rate (default 0.001).")] = None,
    replay: Annotated[Optional[str], typer.Option(help="Digits mixed in so the model keeps reading everyone "
                                                       "else (default mnist; '' for none).")] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    threads: ThreadsOption = None,
    runs_dir: Annotated[str, typer.Option(help="Where the new run folder goes.")] = "runs",
) -> None:
    """Teach a model your handwriting: fine-tune a copy on your digits; writes runs/<time>-finetune/."""
    _keras_quietly()
    from digitlab.training.finetune import finetune

    options = {name: value for name, value in (("holdout", holdout), ("epochs", epochs),
                                                ("learning_rate", learning_rate), ("replay", replay), ("seed", seed))
               if value is not None}
    run = finetune(model, data, runs_dir=runs_dir, offline=_Settings.offline, threads=threads, **options)
    metrics = run.metrics
    console.print(f"[bold]{_shown(run.path)}[/bold]: your held-out digits {metrics['personal_accuracy_before']:.1%} "
                  f"before, {metrics['personal_accuracy']:.1%} after", highlight=False)
    if "mnist_test_accuracy" in metrics:
        console.print(f"MNIST test: {metrics['mnist_test_accuracy_before']:.2%} before, "
                      f"{metrics['mnist_test_accuracy']:.2%} after; {metrics['seconds']:.1f} s in all", highlight=False)
    _print_report_line(run.path)
    console.print(f"read with it: digitlab predict {_shown(run.path)} FILES, or digitlab serve {_shown(run.path)}",
                  highlight=False)


@app.command("sweep")
def sweep_command(
    sweep_file: Annotated[Path, typer.Argument(help="The sweep's TOML file: recipe, [fixed], [search] (see README).")],
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    cpus_per_trial: Annotated[int, typer.Option(
        min=1, help="With --ray: CPUs (and TensorFlow threads) per trial.")] = 1,
    runs_dir: Annotated[Optional[str], typer.Option(help="Where the sweep folder goes (default runs/).")] = None,
) -> None:
    """Search over recipe options; writes results.csv, trials.png and best.toml. With --ray the
    trials run in parallel on Ray Tune and ASHA stops those that fall behind."""
    from digitlab.training.sweep import run_sweep

    if not (ray or ray_address):
        _keras_quietly()
    result = run_sweep(sweep_file, runs_dir, ray=ray, ray_address=ray_address, cpus_per_trial=cpus_per_trial,
                       offline=_Settings.offline)
    metric = result.sweep.metric
    table = Table("trial", *result.sweep.search, metric, "epochs", "status")
    for row in result.table.to_dict("records"):
        value = row[metric]
        table.add_row(str(row["trial"]), *[str(row[name]) for name in result.sweep.search],
                      "-" if value != value else f"{value:.4f}", f"{row['epochs_run']}/{row['epochs']}",
                      row["status"], style="bold" if row["trial"] == result.best_trial else None)
    console.print(table)
    console.print(f"best: trial {result.best_trial}, {metric} {result.best_value:.4f}; "
                  f"{result.training_seconds:.1f} s of training", highlight=False)
    console.print(f"[bold]{_shown(result.path)}[/bold]: results.csv, trials.png, best.toml "
                  f"(train it with: digitlab train --config {_shown(result.path / 'best.toml')})", highlight=False)


def _print_evaluation(evaluation) -> None:
    console.print(f"accuracy {evaluation.accuracy:.2%}   loss {evaluation.loss:.4f}   "
                  f"macro F1 {evaluation.macro_f1:.4f}   ({len(evaluation.labels):,} images)")
    console.print(f"expected calibration error {evaluation.calibration_error:.2%} "
                  "(how far confidence is from accuracy)", highlight=False)
    confusion = Table("true \\ predicted", *[str(digit) for digit in range(10)], title="confusion matrix")
    for digit, row in enumerate(evaluation.confusion):
        confusion.add_row(str(digit), *[str(count) for count in row])
    console.print(confusion)
    per_class = Table("digit", "precision", "recall", "F1", "images", title="per class")
    for entry in evaluation.per_class:
        per_class.add_row(str(entry["digit"]), f"{entry['precision']:.4f}", f"{entry['recall']:.4f}",
                          f"{entry['f1']:.4f}", str(entry["support"]))
    console.print(per_class)


@app.command("evaluate")
def evaluate_command(
    model: ModelArgument,
    data: Annotated[str, typer.Option(help="Labelled data to evaluate on.")] = "mnist:test",
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Folder for the report (default: beside the model).")] = None,
    tta: TtaOption = False,
    force: ForceOption = False,
) -> None:
    """Accuracy, loss, confusion matrix and per-class figures, printed and drawn."""
    from digitlab.inference.evaluating import evaluate_model

    evaluation, report = evaluate_model(model, data, out, tta=tta, force=force, offline=_Settings.offline,
                                        prefer_onnx=True)
    _print_evaluation(evaluation)
    console.print(f"report: {_shown(report)}")


PRINTED_FILES = 50  # with an output file, larger batches print only their summary
UNREADABLE_EXIT = 3  # the output was written, but some files could not be read


def _print_file_reading(result) -> None:
    path = _shown(result.path)
    if not result.readable:
        console.print(f"{path}: [red]{_shown(result.status)}[/red]", highlight=False)
        return
    reading = result.reading
    if not reading.found:
        console.print(f"{path}: no digit found", highlight=False)
        return
    top3 = "  ".join(
        "/".join(f"{digit} {probability:.0%}" for digit, probability in entry.top3) for entry in reading.digits
    )
    console.print(f"{path}: [bold]{_shown(reading.text)}[/bold]  confidence {reading.confidence:.1%}   "
                  f"top-3: {top3}", highlight=False)


def _print_batch_summary(results) -> None:
    from digitlab.recognition.batch import label_accuracy, status_counts

    counts = ", ".join(f"{status} {count:,}" for status, count in status_counts(results).items())
    console.print(f"{len(results):,} files: {counts}", highlight=False)
    accuracy = label_accuracy(results)
    if accuracy is not None:
        right = round(accuracy * len(results))
        console.print(f"accuracy against the label folders: {accuracy:.2%} ({right:,} of {len(results):,} "
                      "files read as their folder's digit)", highlight=False)


def _read_photos(classifier, files, output: Path | None, multi_digit: bool, workers: int | None,
                 debug_dir: Path | None, force: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from digitlab.inference.predict import write_readings

    long_batch = len(files) > PRINTED_FILES
    with Progress(TextColumn("reading"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=error_console, transient=True,
                  disable=not (long_batch and error_console.is_terminal)) as progress:
        task = progress.add_task("reading", total=len(files))
        results = classifier.read_many(files, multi_digit, workers, debug_dir,
                                       on_progress=lambda done, _: progress.update(task, completed=done))
    if output is None or not long_batch:
        for result in results:
            _print_file_reading(result)
    if output is not None:
        console.print(f"wrote {_shown(write_readings(output, results, force))}", highlight=False)
    _print_batch_summary(results)
    if not all(result.readable for result in results):
        raise typer.Exit(UNREADABLE_EXIT)


@app.command("predict")
def predict_command(
    model: ModelArgument,
    inputs: Annotated[
        list[str],
        typer.Argument(help="Photos, scans or drawings: image files, and folders searched through for them "
                       "(label folders 0..9 included); or one data source (Kaggle CSV, IDX, npz, or a "
                       "folder of such files)."),
    ],
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Photos: .csv or .json, one entry per file (path, label, status, "
                     "text, confidence, digits, top3). A data source: CSV of id (from 1, as submit's "
                     "ImageId), label and the 10 probabilities (default predictions.csv)."),
    ] = None,
    single: Annotated[bool, typer.Option(
        "--single", help="Photos hold one digit each: read only the main one.")] = False,
    tta: TtaOption = False,
    debug_dir: Annotated[
        Optional[Path], typer.Option("--debug-dir", help="Write the 28x28 digits the model saw as PNG "
                                     "(reads the photos one by one, in this process).")
    ] = None,
    force: ForceOption = False,
    ray: Annotated[bool, typer.Option("--ray", help="Large inputs (folders of images, many CSV / IDX / npz files): "
                                      "predict shard by shard on Ray Data into the folder --output, one "
                                      "part-NNNNN.csv per shard; a stopped run resumes.")] = False,
    ray_address: RayAddressOption = None,
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="Processes preparing photos (default: one per CPU); with --ray, prediction workers.")] = None,
    images_per_block: Annotated[
        int, typer.Option(min=1, help="With --ray: images per shard of an image folder.")
    ] = 10_000,
) -> None:
    """Predict digits: each photo's number with confidence and top-3, or every image of a data source.

    Photos: every file is answered, in order (files as given, each folder's by path), with a
    status: ok, no digit, or unreadable: REASON; a summary follows (with the accuracy when every
    file lies in a label folder 0..9). Exit status 0 when every file was read, 3 when the output
    was written but some files were unreadable, 1 when nothing was read (a bad model, an output
    that exists without --force).

    A data source: one row per image, id counting from 1 as submit's ImageId does; a bad row
    refuses the whole file, naming the file and line. With --ray, image files are answered one
    by one as above (columns path and status), data files whole.
    """
    if ray or ray_address:
        _predict_on_ray(model, inputs, output or Path("predictions"), ray_address, workers, images_per_block,
                        tta, force)
        return
    from digitlab.outputs import check_new
    from digitlab.recognition.batch import image_files, is_image_input

    photos = image_files(inputs) if all(is_image_input(text) for text in inputs) else None
    if output is not None:
        check_new(output, force)
    from digitlab.inference.classifier import load_model
    from digitlab.inference.predict import images_to_predict, write_predictions

    classifier = load_model(model, tta=tta, prefer_onnx=True)
    if photos is not None:
        _read_photos(classifier, photos, output, not single, workers, debug_dir, force)
        return
    if len(inputs) != 1:
        raise DigitlabError("give either image files and folders of images, or one data source")
    output = output or check_new(Path("predictions.csv"), force)
    dataset = images_to_predict(inputs[0], _Settings.offline)
    probabilities = classifier.predict_probabilities(dataset)
    write_predictions(output, dataset, probabilities, force)
    predicted = np.bincount(probabilities.argmax(axis=1), minlength=10)
    counts = ", ".join(f"{digit}: {count}" for digit, count in enumerate(predicted))
    console.print(f"wrote {_shown(output)} ({len(dataset):,} images; predicted {counts})")


def _predict_on_ray(model: Path, inputs: list[str], folder: Path, address: str | None, workers: int | None,
                    images_per_block: int, tta: bool, force: bool) -> None:
    from digitlab.inference.sharded import predict_sharded

    started = time.perf_counter()

    def progress(shard, done: int, total: int) -> None:
        console.print(f"shard {done}/{total}: {_shown(shard.part_name)} ({shard.count:,} images, "
                      f"{time.perf_counter() - started:.1f} s)", highlight=False)

    result = predict_sharded(model, inputs, folder, ray=True, ray_address=address, workers=workers,
                             images_per_block=images_per_block, tta=tta, force=force, on_shard=progress)
    skipped = f"; {result.skipped} already there, skipped" if result.skipped else ""
    rate = f", {result.images_computed / result.seconds:,.0f} images/s" if result.computed and result.seconds else ""
    console.print(f"wrote {_shown(folder)} ({len(result.shards)} parts, {result.images:,} images; "
                  f"{result.computed} computed now{rate}{skipped})", highlight=False)


@app.command("submit")
def submit_command(
    model: ModelArgument,
    test_csv: Annotated[str, typer.Argument(help="Kaggle's test.csv (or any source of images).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The submission file.")] = Path("submission.csv"),
    tta: TtaOption = False,
    force: ForceOption = False,
) -> None:
    """Write a Kaggle submission (ImageId,Label) for test.csv."""
    from digitlab.inference.classifier import load_model
    from digitlab.outputs import check_new

    check_new(output, force)  # before the slow loading and predicting
    path = load_model(model, tta=tta, prefer_onnx=True).submit(test_csv, output, force=force, offline=_Settings.offline)
    console.print(f"wrote {_shown(path)}")


@app.command("export")
def export_command(
    model: Annotated[Path, typer.Argument(help="A .keras / .h5 model file or a run folder.")],
    export_format: Annotated[
        str, typer.Option("--format", help="onnx (ONNX Runtime), tflite (TensorFlow Lite), savedmodel "
                          "(TensorFlow Serving) or h5 (Keras' legacy format).")
    ] = "onnx",
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="The file or folder to write (default: model.onnx, model.tflite, "
                     "saved_model/ or model.h5 in a run folder; else the model file's name with that suffix, "
                     "or saved_model/ beside it)."),
    ] = None,
    force: ForceOption = False,
) -> None:
    """Export a model for another runtime, checked to give the same answers as Keras."""
    _keras_quietly()
    from digitlab.inference.export import EXPORT_FORMATS, default_export_path, export_model

    written = export_model(model, output or default_export_path(model, export_format), export_format, force)
    console.print(f"wrote {_shown(written)} ({EXPORT_FORMATS[export_format.lower()]} and Keras agree)")


@app.command("serve")
def serve_command(
    model: ModelArgument,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    api_token: Annotated[
        Optional[str], typer.Option(help="Require `Authorization: Bearer TOKEN` on /api (also DIGITLAB_API_TOKEN).")
    ] = None,
    allow_no_token: Annotated[
        bool, typer.Option("--allow-no-token", help="Serve a non-loopback address without a token.")
    ] = False,
    collect: Annotated[Optional[Path], typer.Option(
        help="Keep the digits you correct or practise on the page in this folder (DIR/<digit>/*.png) "
             "and let the page fine-tune the model on them.")] = None,
    runs_dir: Annotated[str, typer.Option(help="Where fine-tuned models go.")] = "runs",
) -> None:
    """Serve the drawing page and the HTTP API (POST /api/predict, docs at /docs)."""
    from digitlab.serve import run

    run(model, host=host, port=port, api_token=api_token, allow_no_token=allow_no_token, collect=collect,
        runs_dir=runs_dir)


def main() -> None:
    """Entry point: user mistakes print one line and exit 1, never a traceback."""
    try:
        app()
    except DigitlabError as error:
        error_console.print(f"[red]error:[/red] {_shown(error)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)
    except SystemExit as exit_:
        # Typer turns Ctrl-C into a silent exit 130; say it, unless training has said it already.
        interrupt = exit_.__context__.__cause__ if exit_.__context__ is not None else None
        explained = INTERRUPTION_EXPLAINED in getattr(interrupt, "__notes__", ())
        if exit_.code == 130 and isinstance(interrupt, KeyboardInterrupt) and not explained:
            error_console.print("interrupted")
        raise
