"""Sweeps without Ray: the sweep file's format and its errors, the trials drawn, a sequential sweep."""

import sys

import pandas as pd
import pytest

from digitlab.recipes.config import ConfigError, resolve
from digitlab.training.sweep import Range, read_sweep


def _sweep_file(tmp_path, text: str):
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


BAD_SWEEPS = [
    ('recipe = "tiny-convnet"\nserach = {}\n',
     "unknown key 'serach' (did you mean 'search'?); known: recipe, method, samples, seed, metric, fixed, "
     "search, asha"),
    ('recipe = "tiny-convnet"\n',
     "[search] is missing or empty; name at least one option to vary, e.g. learning_rate = [0.001, 0.01]"),
    ("[search]\nlearning_rat = [0.1]\n",
     "[search] unknown key 'learning_rat' (did you mean 'learning_rate'?); known: "),
    ("[search]\nbatch_size = []\n", "[search] batch_size: the list of values is empty"),
    ("[search]\nbatch_size = 32\n",
     "[search] batch_size: expected a list of values or a range {min = ..., max = ...}, got 32"),
    ("[search]\nlearning_rate = {min = 0.1, max = 0.01}\n",
     "[search] learning_rate: min (0.1) must be below max (0.01)"),
    ("[search]\nlearning_rate = {min = 0.0, max = 0.1, log = true}\n",
     "[search] learning_rate: a log range needs min above 0, got 0.0"),
    ("[search]\nlearning_rate = {min = 0.001}\n", "[search] learning_rate: a range needs both min and max"),
    ("[search]\nlearning_rate = {min = 0.001, max = 0.1, step = 2}\n",
     "[search] learning_rate: unknown range key 'step'; a range has min, max and log"),
    ('method = "grid"\n[search]\nlearning_rate = {min = 0.001, max = 0.1}\n',
     '[search] learning_rate: a grid needs a list of values; a range {min, max} needs method = "random"'),
    ("samples = 4\n[search]\nbatch_size = [32, 64]\n",
     'samples is for method = "random"; a grid runs every combination once'),
    ('method = "bayes"\n[search]\nbatch_size = [32]\n', "method = 'bayes' is not one of grid, random"),
    ('metric = "test_accuracy"\n[search]\nbatch_size = [32]\n',
     "metric = 'test_accuracy' is not one of val_accuracy, val_loss (the test data is only reported on, "
     "never used to choose)"),
    ("samples = 0\n[search]\nlearning_rate = {min = 0.001, max = 0.1}\n",
     "samples must be a whole number of at least 1, got 0"),
    ("[fixed]\nbatch_size = 64\n[search]\nbatch_size = [32, 64]\n",
     "batch_size is both in [fixed] and in [search]; keep it in one"),
    ("[fixed]\nepoch = 2\n[search]\nbatch_size = [32]\n", "[fixed]: unknown key 'epoch'; known keys: "),
    ("[search]\noptimizer = ['adam', 'adagrad']\n",
     "trial 2 (optimizer = 'adagrad'): optimizer = 'adagrad' is not one of adam, adamw, rmsprop, sgd"),
    ("[search]\nbatch_size = [32, 'big']\n", "trial 2 (batch_size = 'big'): batch_size must be int, got 'big'"),
    ("[asha]\ngrace_periods = 1\n[search]\nbatch_size = [32]\n",
     "[asha] unknown key 'grace_periods' (did you mean 'grace_period'?); known: grace_period, reduction_factor"),
    ("[fixed]\nvalidation = 0\n[search]\nbatch_size = [32]\n",
     "a sweep chooses by val_accuracy and needs validation data (validation = 0 was given)"),
    ("[search\n", "not valid TOML"),
]


@pytest.mark.parametrize("text, message", BAD_SWEEPS)
def test_a_bad_sweep_file_is_named_with_its_key(tmp_path, text, message):
    path = _sweep_file(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        read_sweep(path)
    assert str(caught.value).startswith(f"{path}"), str(caught.value)
    assert message in str(caught.value)


def test_the_cli_prints_one_line_for_a_bad_sweep(run_cli, tmp_path):
    path = _sweep_file(tmp_path, "[search]\nbatch_size = []\n")
    result = run_cli("sweep", path)
    assert result.code == 1
    assert " ".join(result.err.split()) == f"error: {path}: [search] batch_size: the list of values is empty"


def test_ray_options_without_ray_installed_say_how_to_install_it(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as where it is not installed
    path = _sweep_file(tmp_path, "[search]\nbatch_size = [32]\n")
    result = run_cli("sweep", path, "--ray", "--runs-dir", tmp_path / "runs")
    assert result.code == 1
    assert " ".join(result.err.split()) == 'error: Ray is not installed; install it with: pip install "digitlab[ray]"'
    assert not (tmp_path / "runs").exists()
    result = run_cli("predict", tmp_path, tmp_path, "--ray")
    assert " ".join(result.err.split()) == 'error: Ray is not installed; install it with: pip install "digitlab[ray]"'


def test_a_grid_is_every_combination_and_a_random_search_is_seeded(tmp_path):
    grid = read_sweep(_sweep_file(tmp_path, "[search]\nbatch_size = [32, 64]\naugmentation = {rotation = [0, 10]}\n"))
    assert grid.method == "grid"
    assert grid.trial_settings() == [
        {"batch_size": 32, "augmentation.rotation": 0}, {"batch_size": 32, "augmentation.rotation": 10},
        {"batch_size": 64, "augmentation.rotation": 0}, {"batch_size": 64, "augmentation.rotation": 10},
    ]
    assert grid.trial_config(grid.trial_settings()[3], "runs", 4).augmentation.rotation == 10.0

    random = read_sweep(_sweep_file(tmp_path, "samples = 20\nseed = 3\n[search]\n"
                                    "learning_rate = {min = 1e-4, max = 1e-1, log = true}\n"
                                    "batch_size = {min = 16, max = 256}\nschedule = ['constant', 'cosine']\n"))
    assert random.method == "random" and random.search["learning_rate"] == Range(1e-4, 1e-1, True)
    trials = random.trial_settings()
    assert len(trials) == 20 and trials == random.trial_settings()  # the same draw every time
    rates = [trial["learning_rate"] for trial in trials]
    assert all(1e-4 <= rate <= 1e-1 for rate in rates) and min(rates) < 1e-3 < max(rates)  # spread over decades
    assert all(isinstance(trial["batch_size"], int) and 16 <= trial["batch_size"] <= 256 for trial in trials)
    assert {trial["schedule"] for trial in trials} == {"constant", "cosine"}


def test_a_sweep_without_ray_trains_the_trials_in_turn(run_cli, data_npz, tmp_path):
    path = _sweep_file(tmp_path, f'recipe = "tiny-convnet"\n[fixed]\ndata = "{data_npz}"\nepochs = 1\n'
                                 "batch_size = 32\n[search]\nlearning_rate = [0.02, 0.00001]\n")
    result = run_cli("sweep", path, "--runs-dir", tmp_path / "runs")
    assert result.code == 0, result.err
    (folder,) = (tmp_path / "runs").iterdir()
    table = pd.read_csv(folder / "results.csv")
    assert list(table["status"]) == ["finished", "finished"] and list(table["epochs_run"]) == [1, 1]
    assert {"trial", "learning_rate", "val_accuracy", "best_epoch", "run"} <= set(table.columns)
    for run in table["run"]:
        assert (folder / run / "model.keras").is_file()
    best = table.loc[table["val_accuracy"].idxmax()]
    assert (folder / "trials.png").is_file() and (folder / "sweep.toml").read_text() == path.read_text()
    assert resolve(config_file=folder / "best.toml").learning_rate == best["learning_rate"]
