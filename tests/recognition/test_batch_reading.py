"""`digitlab predict` over many image files: every file answered, in order, in CSV or JSON, fast."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import digitlab
from conftest import make_learnable_digits
from digitlab.data.convert import convert
from digitlab.recognition.batch import image_files, read_files

NOT_AN_IMAGE = "unreadable: not an image, or a damaged one"


def digit_photo(path: Path, seed: int, size: tuple[int, int] = (90, 70)) -> Path:
    """A small scan of a dark stroke on light paper, the stroke's place and slant set by `seed`."""
    generator = np.random.default_rng(seed)
    page = Image.new("L", size, int(generator.integers(200, 256)))
    left = int(generator.integers(25, size[0] - 25))
    ImageDraw.Draw(page).line([(left, 10), (left + int(generator.integers(-12, 13)), size[1] - 10)],
                              fill=int(generator.integers(0, 60)), width=int(generator.integers(4, 9)))
    path.parent.mkdir(parents=True, exist_ok=True)
    page.save(path)
    return path


@pytest.fixture
def photos(tmp_path) -> Path:
    """Good scans, a blank page, damaged and empty files, a text file named .jpg, label folders."""
    folder = tmp_path / "photos"
    digit_photo(folder / "good-1.png", 1)
    digit_photo(folder / "good-2.jpg", 2)
    Image.new("RGB", (80, 60), "white").save(folder / "blank.png")
    (folder / "broken.png").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a picture")
    digit_photo(folder / "labelled" / "3" / "a.png", 3)
    digit_photo(folder / "labelled" / "7" / "a.png", 4)
    (folder / ".hidden.png").write_bytes(b"")  # hidden and not images: skipped
    (folder / "README.txt").write_text("scans")
    return folder


# In the order `predict` answers them: sorted by path within the folder.
EXPECTED = [
    ("blank.png", "", "no digit"),
    ("broken.png", "", NOT_AN_IMAGE),
    ("empty.png", "", NOT_AN_IMAGE),
    ("good-1.png", "", "ok"),
    ("good-2.jpg", "", "ok"),
    ("labelled/3/a.png", "3", "ok"),
    ("labelled/7/a.png", "7", "ok"),
    ("notes.jpg", "", NOT_AN_IMAGE),
]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """An untrained tiny model: these tests are about reading files, not about accuracy."""
    from digitlab import models

    path = tmp_path_factory.mktemp("model") / "model.keras"
    models.create("tiny-convnet").save(path)
    return path


def fake_predict(images: np.ndarray) -> np.ndarray:
    """Sure of one digit per image, chosen by the image's ink."""
    chosen = images.reshape(len(images), -1).astype(np.int64).sum(axis=1) % 10
    probabilities = np.full((len(images), 10), 0.01)
    probabilities[np.arange(len(images)), chosen] = 0.91
    return probabilities


def test_predict_answers_every_file_in_order_and_exits_3_when_some_are_unreadable(photos, model_file, run_cli,
                                                                                 tmp_path):
    output = tmp_path / "readings.csv"
    result = run_cli("predict", model_file, photos, "-o", output)

    assert result.code == 3, result.err
    rows = list(csv.DictReader(output.open()))
    assert list(rows[0]) == ["path", "label", "status", "text", "confidence", "digits", "top3"]
    assert [(row["path"], row["label"], row["status"]) for row in rows] == [
        (str(photos / name), label, status) for name, label, status in EXPECTED]
    for row in rows:
        if row["status"] == "ok":
            assert row["text"] and 0 < float(row["confidence"]) <= 1
            assert len(row["top3"].split("|")) == len(row["text"])
            assert all(len(entry.split()) == 3 for entry in row["top3"].split("|"))
        else:
            assert row["text"] == "" and row["top3"] == ""
    printed = " ".join(result.out.split())
    assert "8 files: ok 4, no digit 1, unreadable 3" in printed
    assert f"{photos / 'broken.png'}: {NOT_AN_IMAGE}" in printed
    assert f"{photos / 'blank.png'}: no digit found" in printed
    assert "accuracy" not in printed  # not every file lies in a label folder


def test_json_readings_keep_each_files_status_and_digits(photos, model_file, run_cli, tmp_path):
    output = tmp_path / "readings.json"
    result = run_cli("predict", model_file, photos / "good-1.png", photos / "broken.png", photos / "labelled",
                     "-o", output, "--single")

    assert result.code == 3, result.err
    readings = json.loads(output.read_text())
    assert [(reading["path"], reading["label"], reading["status"]) for reading in readings] == [
        (str(photos / "good-1.png"), None, "ok"), (str(photos / "broken.png"), None, NOT_AN_IMAGE),
        (str(photos / "labelled/3/a.png"), 3, "ok"), (str(photos / "labelled/7/a.png"), 7, "ok")]
    good = readings[0]
    assert len(good["digits"]) == 1 and good["text"] == str(good["digits"][0]["digit"])
    assert len(good["digits"][0]["top3"]) == 3 and 0 < good["confidence"] <= 1
    assert readings[1]["digits"] == [] and readings[1]["confidence"] is None and readings[1]["text"] == ""


def test_label_folders_are_read_as_photos_with_accuracy_and_exit_0(photos, model_file, run_cli, tmp_path):
    output = tmp_path / "readings.csv"
    result = run_cli("predict", model_file, photos / "labelled", "-o", output)

    assert result.code == 0, result.err
    rows = list(csv.DictReader(output.open()))
    assert [(row["label"], row["status"]) for row in rows] == [("3", "ok"), ("7", "ok")]
    right = sum(row["text"] == row["label"] for row in rows)
    printed = " ".join(result.out.split())
    assert "2 files: ok 2, no digit 0, unreadable 0" in printed
    assert f"accuracy against the label folders: {right / 2:.2%} ({right} of 2 files" in printed


def test_many_files_read_by_workers_and_in_this_process_give_the_same_output(tmp_path, model_file, run_cli):
    folder = tmp_path / "scans"
    for index in range(70):  # enough for the workers to start
        digit_photo(folder / str(index % 10) / f"{index:03d}.png", seed=index)
    (folder / "5" / "zz-broken.png").write_bytes(b"\x89PNG broken")

    in_process = run_cli("predict", model_file, folder, "-o", tmp_path / "here.csv", "--workers", "1")
    by_workers = run_cli("predict", model_file, folder, "-o", tmp_path / "workers.csv", "--workers", "2")

    assert in_process.code == by_workers.code == 3
    assert (tmp_path / "here.csv").read_bytes() == (tmp_path / "workers.csv").read_bytes()
    rows = list(csv.DictReader((tmp_path / "workers.csv").open()))
    assert [row["path"] for row in rows] == sorted(str(path) for path in folder.rglob("*.png"))
    broken = next(row for row in rows if row["path"].endswith("zz-broken.png"))
    assert broken["label"] == "5" and broken["status"].startswith("unreadable: ")
    assert "000.png" not in by_workers.out  # a long batch prints its summary, not every file
    assert "71 files: ok 70, no digit 0, unreadable 1" in " ".join(by_workers.out.split())


def test_library_reads_files_with_statuses_labels_and_the_same_answers_either_way(photos, tmp_path):
    files = image_files([photos, photos / "good-1.png", tmp_path / "missing.png"])
    in_process = read_files(fake_predict, files, workers=1)
    many = image_files([photos] * 10)  # enough files for worker processes
    by_workers = read_files(fake_predict, many, workers=2)

    assert [(str(result.path), result.status) for result in in_process] == [
        *((str(photos / name), status) for name, _, status in EXPECTED),
        (str(photos / "good-1.png"), "ok"), (str(tmp_path / "missing.png"), "unreadable: no such file")]
    assert [result.label for result in in_process[5:7]] == [3, 7]
    unreadable = in_process[1]
    assert unreadable.text == "" and unreadable.confidence is None and unreadable.reading is None
    answers = [(result.status, result.text, result.confidence) for result in in_process[:8]]
    assert [(result.status, result.text, result.confidence) for result in by_workers] == answers * 10


def test_classifier_reads_many_files(photos, model_file):
    classifier = digitlab.load_model(model_file)
    results = classifier.read_many([photos / "good-1.png", photos / "empty.png"], multi_digit=False)
    assert [result.status for result in results] == ["ok", NOT_AN_IMAGE]
    assert results[0].text == classifier.read(photos / "good-1.png", multi_digit=False).text


def test_debug_files_of_two_inputs_with_one_name_do_not_overwrite_each_other(photos, model_file, run_cli,
                                                                             tmp_path):
    seen = tmp_path / "seen"
    result = run_cli("predict", model_file, photos / "labelled", photos / "broken.png", "--debug-dir", seen)

    assert result.code == 3, result.err
    names = {path.name for path in seen.iterdir()}
    assert {"3-a-ink.png", "7-a-ink.png", "3-a-digit-0.png", "7-a-digit-0.png"} <= names
    assert f"{photos / 'broken.png'}: {NOT_AN_IMAGE}" in " ".join(result.out.split())


def test_nothing_is_read_when_the_output_exists_or_a_folder_has_no_images(photos, model_file, run_cli, tmp_path):
    output = tmp_path / "readings.csv"
    output.write_text("mine")
    exists = run_cli("predict", model_file, photos, "-o", output)
    assert exists.code == 1 and "already exists; pass --force" in exists.err
    assert output.read_text() == "mine"
    (tmp_path / "empty").mkdir()
    empty = run_cli("predict", model_file, tmp_path / "empty", "-o", tmp_path / "other.csv")
    assert empty.code == 1 and "no image files" in empty.err
    assert not (tmp_path / "other.csv").exists()


def test_a_folder_of_dataset_files_is_still_a_data_source(tmp_path, model_file, run_cli):
    data = convert({"train": make_learnable_digits(30), "test": make_learnable_digits(20, seed=1)},
                   tmp_path / "kaggle", to="csv", kaggle=True)
    output = tmp_path / "predictions.csv"
    result = run_cli("predict", model_file, data, "-o", output)
    assert result.code == 0, result.err
    rows = list(csv.DictReader(output.open()))
    assert len(rows) == 20 and list(rows[0]) == ["id", "label"] + [f"p{digit}" for digit in range(10)]


def test_label_folders_stay_a_labelled_data_source_for_evaluate(tmp_path, model_file, run_cli):
    folder = convert({"test": make_learnable_digits(30)}, tmp_path / "digits", to="png")
    loaded = digitlab.load(folder)
    assert len(loaded) == 30 and np.array_equal(np.bincount(loaded.labels), [3] * 10)
    result = run_cli("evaluate", model_file, "--data", folder, "--out", tmp_path / "evaluation")
    assert result.code == 0, result.err
    assert "(30 images)" in result.out


def test_a_28x28_dark_on_light_image_in_an_image_folder_is_prepared(tmp_path):
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255  # a "1", white on black as MNIST's
    for name, pixels in (("mnist-style", digit), ("dark-on-light", 255 - digit)):
        (tmp_path / "digits" / "1").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "digits" / "1" / f"{name}.png")

    loaded = digitlab.load(tmp_path / "digits")
    by_name = dict(zip(["dark-on-light", "mnist-style"], loaded.images))
    assert np.array_equal(by_name["mnist-style"], digit)  # as it is
    prepared = by_name["dark-on-light"]
    assert prepared[:4].max() == 0 and prepared[:, :4].max() == 0  # paper became black background
    assert prepared[10:18, 12:16].mean() > 128  # and the stroke white ink, in the middle


def test_a_debug_dir_that_is_a_file_is_named(photos, model_file, run_cli, tmp_path):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    result = run_cli("predict", model_file, photos / "labelled", "--debug-dir", taken)
    assert result.code == 1 and f"{taken}: is a file; the debug folder must be a folder" in " ".join(result.err.split())
    assert taken.read_text() == "mine"
