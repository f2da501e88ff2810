"""Scale-out on a local Ray: an ensemble as Ray tasks, a sweep as Tune trials under ASHA, and
prediction by shard on Ray Data that equals the plain prediction and resumes."""

import json

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")
# Ray Data reads its deprecated settings when it copies its context to the workers.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

import digitlab  # noqa: E402
from conftest import make_learnable_digits  # noqa: E402
from digitlab.data.dataset import Dataset  # noqa: E402
from digitlab.data.formats import idx, kaggle_csv  # noqa: E402
from digitlab.inference.sharded import PLAN_FILENAME, read_predictions  # noqa: E402
from digitlab.recipes.config import resolve  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_run(data_npz, tmp_path_factory):
    return digitlab.train("tiny-convnet", data=data_npz, epochs=1, batch_size=32, learning_rate=0.01,
                          runs_dir=tmp_path_factory.mktemp("runs"), verbose=0)


def test_ensemble_members_train_as_ray_tasks(run_cli, data_npz, tmp_path):
    result = run_cli("ensemble", "--members", "2", "--data", data_npz, "--model", "tiny-convnet", "--epochs", "1",
                     "--batch-size", "32", "--learning-rate", "0.01", "--runs-dir", tmp_path, "--ray")
    assert result.code == 0, result.err
    assert "as Ray tasks" in result.out and "members' test accuracy" in result.out
    (folder,) = tmp_path.iterdir()
    description = json.loads((folder / "ensemble.json").read_text())
    assert [member["seed"] for member in description["members"]] == [0, 1]
    for member in description["members"]:
        assert (folder / member["path"] / "model.keras").is_file()
        assert member["path"].startswith("members/")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["members"] == 2 and metrics["test_accuracy"] > 0.2
    images = make_learnable_digits(20, seed=5).images
    assert digitlab.load_model(folder).predict_probabilities(images).shape == (20, 10)


def test_sweep_runs_tune_trials_and_asha_stops_the_bad_ones(run_cli, data_npz, tmp_path):
    sweep_file = tmp_path / "sweep.toml"
    # The good learning rate comes first, so the bad trials reach ASHA's rungs behind it.
    sweep_file.write_text(f'recipe = "tiny-convnet"\n\n[fixed]\ndata = "{data_npz}"\nepochs = 2\nbatch_size = 16\n\n'
                          "[search]\nlearning_rate = [0.02, 0.00001]\nseed = [0, 1]\n")
    result = run_cli("sweep", sweep_file, "--ray", "--runs-dir", tmp_path / "runs")
    assert result.code == 0, result.err
    (folder,) = (tmp_path / "runs").iterdir()
    table = pd.read_csv(folder / "results.csv")
    assert list(table["trial"]) == [1, 2, 3, 4] and list(table["learning_rate"]) == [0.02, 0.02, 0.00001, 0.00001]
    best = table.loc[table["val_accuracy"].idxmax()]
    assert best["learning_rate"] == 0.02 and best["status"] == "finished"
    assert (table["status"] == "stopped early").any(), table.to_string()
    assert (table.loc[table["status"] == "stopped early", "epochs_run"] < 2).all()
    assert (folder / "trials.png").stat().st_size > 1000
    best_config = resolve(config_file=folder / "best.toml")
    assert best_config.learning_rate == 0.02 and best_config.epochs == 2 and best_config.model == "tiny-convnet"
    assert f"best: trial {best['trial']}" in result.out


def _shards(tmp_path, images: np.ndarray):
    """The images as a folder of three shard files, CSV and IDX, and as one whole CSV file."""
    folder = tmp_path / "shards"
    folder.mkdir()
    kaggle_csv.write(folder / "a.csv", Dataset(images[:70], None), with_labels=False)
    idx.write_images(folder / "b-images-idx3-ubyte.gz", images[70:150])
    kaggle_csv.write(folder / "c.csv.gz", Dataset(images[150:], None), with_labels=False)
    whole = tmp_path / "whole.csv"
    kaggle_csv.write(whole, Dataset(images, None), with_labels=False)
    return folder, whole


def test_prediction_by_shard_on_ray_equals_plain_prediction_and_resumes(run_cli, model_run, tmp_path):
    images = make_learnable_digits(230, seed=4).images
    shards, whole = _shards(tmp_path, images)
    plain = run_cli("predict", model_run.path, whole, "-o", tmp_path / "plain.csv")
    assert plain.code == 0, plain.err

    out = tmp_path / "out"
    result = run_cli("predict", model_run.path, shards, "-o", out, "--ray")
    assert result.code == 0, result.err
    assert "3 parts, 230 images; 3 computed now" in result.out
    parts = sorted(path.name for path in out.glob("part-*.csv"))
    assert parts == ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
    read_predictions(out, tmp_path / "merged.csv")
    assert (tmp_path / "merged.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()

    # Resume: only the missing part is computed again; the others are left as they were.
    kept = {name: (out / name).stat().st_mtime_ns for name in ("part-00000.csv", "part-00002.csv")}
    (out / "part-00001.csv").unlink()
    again = run_cli("predict", model_run.path, shards, "-o", out, "--ray")
    assert again.code == 0, again.err
    assert "1 computed now" in again.out and "2 already there, skipped" in again.out
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept
    read_predictions(out, tmp_path / "merged-again.csv")
    assert (tmp_path / "merged-again.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()

    # Other inputs into the same folder are refused, not mixed in.
    other = run_cli("predict", model_run.path, whole, "-o", out, "--ray")
    assert other.code == 1
    assert f"error: {out} holds the predictions of other inputs or another model ({PLAN_FILENAME} differs); " \
           "give another folder, or --force to start again" in " ".join(other.err.split())


def test_prediction_by_shard_on_ray_answers_every_image_file(run_cli, model_run, tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    digits = make_learnable_digits(2, seed=6).images
    for number, pixels in enumerate(digits):
        Image.fromarray(pixels).save(folder / f"{number}.png")
    (folder / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not a whole image")  # damaged
    Image.new("L", (40, 40), 255).save(folder / "3.png")  # white paper, no ink

    out = tmp_path / "out"
    result = run_cli("predict", model_run.path, folder, "-o", out, "--images-per-block", "3", "--ray")
    assert result.code == 0, result.err
    assert "2 parts, 4 images; 2 computed now" in result.out
    table = read_predictions(out)
    assert list(table.columns) == ["id", "label", *(f"p{digit}" for digit in range(10)), "path", "status"]
    assert list(table["id"]) == ["1", "2", "3", "4"]
    assert list(table["path"]) == [str((folder / f"{number}.png").resolve()) for number in range(4)]
    assert list(table["status"][:2]) == ["ok", "ok"] and table["status"][3] == "no digit"
    assert table["status"][2].startswith("unreadable: ")
    assert table.loc[2:, ["label", "p0"]].isna().all().all()  # no prediction for what was not read
    expected = model_run.predict(digits)
    assert [int(label) for label in table["label"][:2]] == expected.tolist()


def test_prediction_by_shard_refuses_a_data_file_with_a_bad_row_naming_file_and_line(run_cli, model_run, tmp_path):
    folder, _ = _shards(tmp_path, make_learnable_digits(230, seed=4).images)
    lines = (folder / "a.csv").read_text().splitlines()
    lines[5] = "x," + lines[5].split(",", 1)[1]
    (folder / "a.csv").write_text("\n".join(lines) + "\n")
    result = run_cli("predict", model_run.path, folder, "-o", tmp_path / "out", "--ray")
    assert result.code == 1
    # Ray logs on stderr too; digitlab's one line ends it
    printed = " ".join(result.err.split())
    assert printed.endswith(f"error: {folder / 'a.csv'}, line 6: pixel0 is 'x', not a whole number")
