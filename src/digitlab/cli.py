"""The `digitlab` command: thin subcommands over the library's functions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from digitlab import __version__
from digitlab.errors import DigitlabError

app = typer.Typer(
    help="Train, understand and use handwritten-digit recognisers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Look at and convert digit data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
error_console = Console(stderr=True)

SourceArgument = Annotated[
    str,
    typer.Argument(
        help="'mnist', an IDX file or folder, a .npz, a Kaggle .csv, an image folder or image; "
        "SOURCE:part picks one part (e.g. mnist:test)."
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace existing output files.")]


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
    from digitlab.sources import load_parts

    return load_parts(source, offline=_Settings.offline)


@data_app.command("info")
def data_info(
    source: SourceArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Sizes, per-class counts and pixel statistics of a dataset."""
    from digitlab.summary import summarize

    summaries = {part: summarize(dataset) for part, dataset in _load_parts(source).items()}
    if as_json:
        print(json.dumps({part: summary.as_dict() for part, summary in summaries.items()}, indent=2))
        return
    origin = next(iter(summaries.values())).origin
    console.print(f"[bold]{source}[/bold]  (from {Path(origin).parent if origin else '?'})")
    sizes = Table("part", "images", "labels", "pixel mean", "pixel std", "min", "max", "ink")
    for part, summary in summaries.items():
        sizes.add_row(
            part, f"{summary.images:,}", "yes" if summary.labelled else "none",
            f"{summary.pixel_mean:.2f}", f"{summary.pixel_std:.2f}",
            str(summary.pixel_min), str(summary.pixel_max), f"{summary.ink_fraction:.1%}",
        )
    console.print(sizes)
    labelled = {part: summary for part, summary in summaries.items() if summary.labelled}
    if labelled:
        classes = Table("digit", *[str(digit) for digit in range(10)], title="images per class")
        for part, summary in labelled.items():
            classes.add_row(part, *[str(count) for count in summary.class_counts])
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
    from digitlab import plots

    parts = _load_parts(source)
    name = Path(source).name.replace(":", "-") if Path(source).exists() else source.replace(":", "-")
    first = next(iter(parts.values()))
    if not -len(first) <= index < len(first):
        raise DigitlabError(f"--index {index} is outside 0..{len(first) - 1} of {first.name}")
    figures = {
        out / f"{name}-samples.png": plots.sample_grid(first, rows=-(-samples // 10), columns=min(samples, 10), seed=seed),
        out / f"{name}-image-{index}.png": plots.single_image(first, index),
    }
    if any(dataset.is_labelled for dataset in parts.values()):
        figures[out / f"{name}-classes.png"] = plots.class_distribution(list(parts.values()))
    from digitlab.outputs import check_new

    for path in figures:
        check_new(path, force)
    for path, figure in figures.items():
        plots.save(figure, path, force)
        console.print(f"wrote {path}")


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
    from digitlab.convert import convert

    parts = _load_parts(source)
    written = convert(parts, destination, to=to, force=force, kaggle=kaggle)
    sizes = ", ".join(f"{part} {len(dataset):,}" for part, dataset in parts.items())
    console.print(f"wrote {written} ({sizes})")


def main() -> None:
    """Entry point: user mistakes print one line and exit 1, never a traceback."""
    try:
        app()
    except DigitlabError as error:
        error_console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)
