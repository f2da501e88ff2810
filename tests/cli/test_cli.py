"""The data commands as a user runs them."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import make_digits
from digitlab.data.convert import convert


@pytest.fixture
def kaggle_folder(tmp_path):
    return convert({"train": make_digits(50), "test": make_digits(20, labelled=False)}, tmp_path / "kaggle", to="csv")


def test_info_json_has_counts_and_pixel_statistics(kaggle_folder, run_cli):
    result = run_cli("data", "info", kaggle_folder, "--json")
    assert result.code == 0
    figures = json.loads(result.out)
    assert figures["train"]["images"] == 50 and figures["train"]["class_counts"] == [5] * 10
    assert figures["test"]["labelled"] is False and figures["test"]["class_counts"] is None
    assert 0 <= figures["train"]["pixel_min"] <= figures["train"]["pixel_mean"] <= figures["train"]["pixel_max"] <= 255


def test_show_writes_three_pngs_and_refuses_to_overwrite(kaggle_folder, run_cli, tmp_path):
    out = tmp_path / "pictures"
    result = run_cli("data", "show", kaggle_folder, "--out", out, "--index", 7)
    assert result.code == 0, result.err
    names = sorted(path.name for path in out.iterdir())
    assert names == ["kaggle-classes.png", "kaggle-image-7.png", "kaggle-samples.png"]
    for path in out.iterdir():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300
    before = {path: path.read_bytes() for path in out.iterdir()}
    again = run_cli("data", "show", kaggle_folder, "--out", out, "--index", 7)
    assert again.code == 1 and "already exists" in again.err
    assert before == {path: path.read_bytes() for path in out.iterdir()}


@pytest.mark.parametrize("suffix", [":train", "/:train"])
def test_show_names_a_part_of_a_folder_inside_out(kaggle_folder, run_cli, tmp_path, suffix):
    out = tmp_path / "pictures"
    result = run_cli("data", "show", f"{kaggle_folder}{suffix}", "--out", out)
    assert result.code == 0, result.err
    assert sorted(path.name for path in out.iterdir()) == [
        "kaggle-train-classes.png", "kaggle-train-image-0.png", "kaggle-train-samples.png"]
    assert sorted(path.name for path in kaggle_folder.iterdir()) == ["test.csv", "train.csv"]


@pytest.mark.parametrize(("samples", "rows", "columns"), [(36, 6, 6), (37, 6, 7), (7, 1, 7), (50, 5, 10)])
def test_show_draws_exactly_the_samples_asked_for(kaggle_folder, run_cli, tmp_path, monkeypatch,
                                                  samples, rows, columns):
    from digitlab.data import pictures

    drawn = {}
    save = pictures.save
    monkeypatch.setattr(pictures, "save", lambda figure, path, force=False: drawn.setdefault(path.name, figure)
                        and save(figure, path, force))
    result = run_cli("data", "show", kaggle_folder, "--out", tmp_path / "pictures", "--samples", samples)
    assert result.code == 0, result.err
    grid = drawn["kaggle-samples.png"]
    assert len(grid.axes) == rows * columns
    assert sum(1 for axis in grid.axes if axis.images) == samples
    assert grid.axes[0].get_subplotspec().get_gridspec().get_geometry() == (rows, columns)

def test_show_index_out_of_range(kaggle_folder, run_cli, tmp_path):
    result = run_cli("data", "show", kaggle_folder, "--out", tmp_path, "--index", 50)
    assert result.code == 1 and "--index 50 is outside 0..49" in result.err


def test_show_unlabelled_data_skips_class_chart(tmp_path, run_cli):
    convert({"test": make_digits(20, labelled=False)}, tmp_path / "test.csv")
    result = run_cli("data", "show", tmp_path / "test.csv", "--out", tmp_path / "out")
    assert result.code == 0
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["test.csv-image-0.png",
                                                                          "test.csv-samples.png"]


def test_help_lists_commands(run_cli):
    result = run_cli("data", "--help")
    assert result.code == 0
    for command in ("info", "show", "convert"):
        assert command in result.out


def test_installed_command_runs_as_a_user_runs_it(kaggle_folder):
    """The console script itself: exit codes and one-line errors, in a fresh process."""
    command = [os.path.join(os.path.dirname(sys.executable), "digitlab")]
    ok = subprocess.run([*command, "data", "info", str(kaggle_folder / "train.csv")], capture_output=True, text=True)
    assert ok.returncode == 0 and "50" in ok.stdout
    bad = subprocess.run([*command, "data", "info", str(kaggle_folder / "missing.csv")], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [f"error: {kaggle_folder / 'missing.csv'}: no such file or folder "
                                               "(dataset names are: mnist)"]
    version = subprocess.run([*command, "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("digitlab ")


@pytest.mark.parametrize("name", ["[/x]", "[draft]", "[bold]odd[/bold]"])
def test_paths_with_markup_characters_print_as_they_are(tmp_path, run_cli, name):
    folder = tmp_path / name  # "[/x]" is a folder "[" holding "x]"
    folder.mkdir(parents=True)
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    data = convert({"train": make_digits(20)}, folder / f"{name}.npz")
    info = run_cli("data", "info", data)
    assert info.code == 0, info.err
    assert f"{name}.npz" in info.out and "MarkupError" not in info.err
    (tmp_path / f"{name}-out.csv").parent.mkdir(parents=True, exist_ok=True)
    converted = run_cli("data", "convert", data, tmp_path / f"{name}-out.csv")
    assert converted.code == 0, converted.err
    assert f"{name}-out.csv" in converted.out.replace("\n", "")
    missing = run_cli("data", "info", folder / f"{name}-missing.npz")
    assert missing.code == 1 and f"{name}-missing.npz" in missing.err.replace("\n", "")


def test_ctrl_c_outside_training_says_interrupted(run_cli, monkeypatch):
    from digitlab.cli import commands

    def interrupted(source):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "_load_parts", interrupted)
    result = run_cli("data", "info", "mnist")
    assert result.code == 130 and result.err.strip() == "interrupted"
