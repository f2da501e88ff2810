"""Fine-tuning on one person's digits: before/after figures, the run folder, refusals, the server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import digitlab
from digitlab.data.writers import Writer
from digitlab.errors import DigitlabError
from digitlab.recipes.config import ConfigError
from digitlab.training.finetune import finetune

QUICK = {"epochs": 4, "steps_per_epoch": 10, "styled": 20}  # seconds, not the defaults' tens of seconds


def write_folder(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """Digits as a person's collection: DIR/<label>/<n>.png, dark ink on white paper, 3x size."""
    for index, (image, label) in enumerate(zip(images, labels)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        paper = Image.fromarray(255 - image).resize((84, 84), Image.Resampling.BILINEAR)
        paper.save(folder / str(label) / f"{index}.png")
    return folder


def per_digit(dataset, count: int, skip: int = 0):
    chosen = np.concatenate([np.flatnonzero(dataset.labels == digit)[skip : skip + count] for digit in range(10)])
    return dataset.subset(chosen)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    from conftest import MNIST_FOLDER

    if not (MNIST_FOLDER / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("real MNIST files not found; set DIGITLAB_DATA")
    run = digitlab.train("fast", data=str(MNIST_FOLDER), train_limit=10_000, epochs=2,
                         runs_dir=str(tmp_path_factory.mktemp("runs")), offline=True, verbose=0)
    return run.path


@pytest.fixture(scope="module")
def writer_digits(base_run):
    """A slanted, wide, thick-stroked writer's MNIST test digits: 12 of each to learn from, 30 to read."""
    from conftest import MNIST_FOLDER

    test = digitlab.load(str(MNIST_FOLDER), part="test")
    writer = Writer(seed=4, slant=22.0, stroke=1, aspect=1.28, strength=1.2)
    return writer.write(per_digit(test, 12)), writer.write(per_digit(test, 30, skip=12))


@pytest.mark.slow
@pytest.mark.mnist
def test_finetune_reads_the_writer_better_and_writes_a_run_folder(base_run, writer_digits, tmp_path, mnist_folder):
    import keras

    learn, other = writer_digits
    folder = write_folder(tmp_path / "mine", learn.images, learn.labels)
    run = finetune(base_run, folder, replay=str(mnist_folder), runs_dir=tmp_path / "runs", verbose=False, **QUICK)

    metrics = json.loads((run.path / "metrics.json").read_text())
    assert run.path.parent == tmp_path / "runs" and run.path.name.endswith("-finetune")
    assert metrics["personal_digits"] == 120 and metrics["held_out"] == 30 and metrics["learned_from"] == 90
    assert metrics["personal_accuracy"] > metrics["personal_accuracy_before"]
    assert metrics["mnist_test_accuracy"] >= metrics["mnist_test_accuracy_before"] - 0.005
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= QUICK["epochs"]

    before = digitlab.load_model(base_run).evaluate(other).accuracy
    after = digitlab.load_model(run.path).evaluate(other).accuracy
    assert after > before + 0.05, (before, after)

    plain = keras.saving.load_model(run.path / "model.keras", compile=False)  # plain Keras opens it
    assert plain.output_shape == (None, 10)
    history = (run.path / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and len(history) == 1 + metrics["epochs_run"]
    assert "val_accuracy" in history[0]
    assert (run.path / "report.html").is_file() and (run.path / "confusion.png").is_file()
    config = (run.path / "config.toml").read_text()
    assert "[finetune]" in config and str(base_run.resolve()) in config and "[finetune.augmentation]" in config
    from digitlab.runs.folder import run_config

    assert run_config(run.path).model == "fast-convnet"  # the base run's settings, read back


@pytest.mark.slow
@pytest.mark.mnist
def test_finetune_command_prints_before_and_after(base_run, writer_digits, tmp_path, run_cli, mnist_folder):
    learn, _ = writer_digits
    folder = write_folder(tmp_path / "mine", learn.images, learn.labels)
    result = run_cli("finetune", base_run, "--data", folder, "--epochs", "1", "--replay", str(mnist_folder),
                     "--runs-dir", tmp_path / "runs")
    assert result.code == 0, result.err
    assert "your held-out digits" in result.out and "before" in result.out and "after" in result.out
    assert "MNIST test" in result.out and "digitlab serve" in result.out
    assert len(list((tmp_path / "runs").glob("*-finetune/model.keras"))) == 1


def test_too_few_examples_say_how_many_are_needed(tmp_path):
    images = np.zeros((30, 28, 28), dtype=np.uint8)
    images[:, 8:20, 12:16] = 255
    folder = write_folder(tmp_path / "mine", images, np.arange(30) % 10)  # 3 of each digit
    with pytest.raises(DigitlabError, match=r"at least 5 examples of each digit.*0 has 3"):
        finetune(tmp_path / "no-model-needed-yet", folder, verbose=False)


def test_unlabelled_digits_are_refused(tmp_path):
    folder = tmp_path / "loose"
    folder.mkdir()
    image = np.zeros((28, 28), dtype=np.uint8)
    image[8:20, 12:16] = 255
    Image.fromarray(image).save(folder / "a.png")
    with pytest.raises(DigitlabError, match="no labels"):
        finetune(tmp_path / "model.keras", folder, verbose=False)


@pytest.mark.parametrize(("options", "words"), [
    ({"epoch": 3}, "unknown option 'epoch'"),
    ({"holdout": 1.5}, "holdout must be between 0 and 1"),
    ({"replay_share": 0.6, "styled_share": 0.5}, "must leave part of each batch"),
    ({"augmentation": {"spin": 3}}, "augmentation"),
])
def test_bad_options_are_named(tmp_path, options, words):
    with pytest.raises(ConfigError, match=words):
        finetune(tmp_path / "model.keras", tmp_path, verbose=False, **options)


@pytest.mark.slow
@pytest.mark.mnist
def test_the_server_fine_tunes_on_collected_examples_and_reads_with_the_new_model(
        base_run, writer_digits, tmp_path, mnist_folder):
    from fastapi.testclient import TestClient

    from digitlab.serve import create_app_for_model

    learn, other = writer_digits
    folder = write_folder(tmp_path / "mine", learn.images, learn.labels)
    app = create_app_for_model(base_run, collect=folder, runs_dir=tmp_path / "runs",
                               finetune_options={"replay": str(mnist_folder), **QUICK})
    client = TestClient(app)

    def read_rightly() -> float:
        right = 0
        for image, label in zip(other.images[::3], other.labels[::3]):
            answer = client.post("/api/predict", json={"pixels": image.tolist()}).json()
            right += answer["text"] == str(label)
        return right / len(other.images[::3])

    before = read_rightly()
    assert client.get("/api/finetune").json()["state"] == "idle"
    started = client.post("/api/finetune")
    assert started.status_code == 202 and started.json()["state"] == "running"
    assert client.post("/api/finetune").status_code == 409  # one at a time
    deadline = time.monotonic() + 240
    while (state := client.get("/api/finetune").json())["state"] == "running":
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state["state"] == "finished", state
    assert any("held-out accuracy" in line for line in state["log"])
    assert state["metrics"]["personal_accuracy"] > state["metrics"]["personal_accuracy_before"]
    assert client.get("/healthz").json()["model"] == Path(state["run"]).name
    assert read_rightly() > before


@pytest.mark.slow
@pytest.mark.mnist
def test_without_replayed_digits_it_warns_and_learns_from_yours_alone(base_run, writer_digits, tmp_path):
    learn, _ = writer_digits
    lines = []
    run = finetune(base_run, learn, replay=str(tmp_path / "no-mnist-here"), runs_dir=tmp_path / "runs",
                   say=lines.append, **QUICK)
    assert any(line.startswith("warning: no replayed digits") and "no-mnist-here" in line for line in lines)
    assert "mnist_test_accuracy" not in run.metrics and run.metrics["kept_share"] == 1.0
    assert run.metrics["personal_accuracy"] >= run.metrics["personal_accuracy_before"]
