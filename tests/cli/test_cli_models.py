"""train, evaluate, predict, submit, models and recipes, run as a user runs them."""

import csv
import tomllib

import pytest

from conftest import make_learnable_digits
from digitlab.data.convert import convert


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One real training run on generated data, shared by the tests below."""
    from digitlab.recipes.config import resolve
    from digitlab.training.fit import train

    folder = tmp_path_factory.mktemp("trained")
    data = convert({"train": make_learnable_digits(300), "test": make_learnable_digits(100, seed=1)},
                   folder / "kaggle", to="csv", kaggle=True)
    config = resolve(overrides={"data": str(data), "model": "tiny-convnet", "epochs": 3,
                                "learning_rate": 0.01, "batch_size": 32, "runs_dir": str(folder / "runs")})
    return train(config, verbose=0), data


def test_train_command_writes_a_run_folder(tmp_path, run_cli):
    data = convert({"train": make_learnable_digits(200)}, tmp_path / "train.csv")
    result = run_cli("train", "--data", data, "--model", "tiny-convnet", "--epochs", "1",
                     "--batch-size", "50", "--validation", "40", "--runs-dir", tmp_path / "runs")
    assert result.code == 0, result.err
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.endswith("-tiny-convnet")  # a model without a recipe: named after it, not "fast"
    saved = tomllib.loads((run / "config.toml").read_text())
    assert (saved["recipe"], saved["optimizer"], saved["learning_rate"]) == ("tiny-convnet", "adam", 0.001)
    assert (saved["schedule"], saved["label_smoothing"]) == ("constant", 0.0)
    assert ("note: no recipe given, so tiny-convnet trains with the default settings (adam at 0.001, constant "
            "schedule, no label smoothing, 1 epoch, batches of 50)") in " ".join(result.err.split())
    assert (run / "model.keras").is_file() and (run / "report.html").is_file()
    assert "validation accuracy" in result.out and f"report: {run / 'report.html'}" in result.out.replace("\n", "")
    assert "calibrated: temperature" in " ".join(result.out.split())


def test_train_command_without_validation_or_test_data_says_there_is_no_report(tmp_path, run_cli):
    data = convert({"train": make_learnable_digits(100)}, tmp_path / "train.csv")
    result = run_cli("train", "--data", data, "--model", "tiny-convnet", "--epochs", "1",
                     "--validation", "0", "--runs-dir", tmp_path / "runs")
    assert result.code == 0, result.err
    (run,) = (tmp_path / "runs").iterdir()
    assert not (run / "report.html").exists()
    printed = " ".join(result.out.split())  # the console wraps long lines
    assert "no validation or test data to measure accuracy on" in printed
    assert "no report: it needs validation or test data" in printed and "report.html" not in printed


def test_train_command_refuses_bad_options_in_one_line(run_cli):
    result = run_cli("train", "--optimizer", "adagrad")
    assert result.code == 1
    assert result.err.strip() == "error: optimizer = 'adagrad' is not one of adam, adamw, rmsprop, sgd"


def test_evaluate_prints_and_draws(trained_run, run_cli, tmp_path):
    run, data = trained_run
    labelled = convert({"test": make_learnable_digits(60, seed=2)}, tmp_path / "labelled.npz")
    result = run_cli("evaluate", run.path, "--data", labelled, "--out", tmp_path / "evaluation")
    assert result.code == 0, result.err
    assert "accuracy" in result.out and "confusion matrix" in result.out and "per class" in result.out
    assert "expected calibration error" in " ".join(result.out.split())
    assert {"report.html", "confusion.png", "confusion-normalized.png"} <= {
        path.name for path in (tmp_path / "evaluation").iterdir()}


def test_predict_writes_probabilities(trained_run, run_cli, tmp_path):
    run, data = trained_run
    output = tmp_path / "predictions.csv"
    result = run_cli("predict", run.path / "model.keras", data / "test.csv", "--output", output)
    assert result.code == 0, result.err
    rows = list(csv.DictReader(output.open()))
    assert len(rows) == 100 and list(rows[0]) == ["id", "label"] + [f"p{digit}" for digit in range(10)]
    assert abs(sum(float(rows[0][f"p{digit}"]) for digit in range(10)) - 1) < 1e-4
    # Rows count from 1, as the submission's ImageId: row id of one is row ImageId of the other.
    assert [row["id"] for row in rows] == [str(number) for number in range(1, 101)]
    submission = tmp_path / "submission.csv"
    assert run_cli("submit", run.path, data / "test.csv", "--output", submission).code == 0
    submitted = dict(line.split(",") for line in submission.read_text().splitlines()[1:])
    assert all(submitted[row["id"]] == row["label"] for row in rows)


def test_submit_writes_kaggle_format_and_never_overwrites(trained_run, run_cli, tmp_path):
    run, data = trained_run
    output = tmp_path / "submission.csv"
    assert run_cli("submit", run.path, data / "test.csv", "--output", output).code == 0
    lines = output.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 101
    assert [line.split(",")[0] for line in lines[1:4]] == ["1", "2", "3"]
    correct = sum(int(line.split(",")[1]) == index % 10 for index, line in enumerate(lines[1:]))
    assert correct >= 50  # the model learnt the bars: the submission follows its predictions
    before = output.read_bytes()
    again = run_cli("submit", run.path, data / "test.csv", "--output", output)
    assert again.code == 1 and "already exists; pass --force" in again.err
    assert output.read_bytes() == before


@pytest.mark.parametrize("damage, message", [
    (lambda row: "x," + row.split(",", 1)[1], "line 4: pixel0 is 'x', not a whole number"),
    (lambda row: row + ",0", "line 4: 785 values, expected 784"),
])
def test_predict_refuses_a_data_file_with_a_bad_row_naming_file_and_line(trained_run, run_cli, tmp_path,
                                                                         damage, message):
    run, data = trained_run
    lines = (data / "test.csv").read_text().splitlines()
    lines[3] = damage(lines[3])
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    result = run_cli("predict", run.path, bad, "--output", tmp_path / "predictions.csv")
    assert result.code == 1
    assert " ".join(result.err.split()) == f"error: {bad}, {message}"
    assert not (tmp_path / "predictions.csv").exists()  # a data file is answered whole or not at all


def test_submit_for_labelled_data_warns_and_gives_the_accuracy_on_its_labels(trained_run, run_cli, tmp_path):
    run, data = trained_run
    output = tmp_path / "submission.csv"
    result = run_cli("submit", run.path, data / "train.csv", "--output", output)
    assert result.code == 0, result.err
    assert len(output.read_text().splitlines()) == 301  # written all the same
    warning = " ".join(result.err.split())
    assert f"warning: {data / 'train.csv'} has a label column: a submission is normally made for the " \
           "unlabelled test.csv; written all the same (accuracy on its labels: " in warning
    accuracy = float(warning.split("accuracy on its labels: ")[1].split("%")[0]) / 100
    assert accuracy == pytest.approx(run.evaluate(data / "train.csv").accuracy, abs=1e-4)
    unlabelled = run_cli("submit", run.path, data / "test.csv", "--output", tmp_path / "other.csv")
    assert unlabelled.code == 0 and "warning" not in unlabelled.err


def test_models_and_recipes_commands(run_cli, tmp_path):
    listing = run_cli("models", "list")
    assert listing.code == 0 and "five-conv-batchnorm" in listing.out and "1,022,858" in listing.out
    shown = run_cli("models", "show", "simple-convnet", "--out", tmp_path)
    assert shown.code == 0 and "34,826" in shown.out and (tmp_path / "simple-convnet.png").is_file()
    recipes = run_cli("recipes", "list")
    assert recipes.code == 0 and "four-conv-augmented" in recipes.out
    unknown = run_cli("models", "show", "resnet-9000")
    assert unknown.code == 1 and "resnet-9000" in unknown.err


def test_users_own_model_file_trains_from_the_command_line(tmp_path, run_cli):
    model_file = tmp_path / "my_models.py"
    model_file.write_text(
        "import keras\n"
        "import digitlab.models\n\n"
        "@digitlab.models.register_model('my-dense', 'Flatten > Dense 32 > Dense 10')\n"
        "def my_dense():\n"
        "    inputs = keras.Input((28, 28), dtype='uint8')\n"
        "    x = keras.layers.Rescaling(1 / 255)(inputs)\n"
        "    x = keras.layers.Flatten()(x)\n"
        "    x = keras.layers.Dense(32, activation='relu')(x)\n"
        "    return keras.Model(inputs, keras.layers.Dense(10, activation='softmax')(x), name='my-dense')\n"
    )
    listing = run_cli("models", "list", "--model-file", model_file)
    assert listing.code == 0 and "my-dense" in listing.out and "25,450" in listing.out
    data = convert({"train": make_learnable_digits(100)}, tmp_path / "train.csv")
    result = run_cli("train", "--data", data, "--model-file", model_file, "--model", "my-dense",
                     "--epochs", "1", "--runs-dir", tmp_path / "runs")
    assert result.code == 0, result.err


def test_predict_photos_prints_each_file_and_writes_json_and_csv(trained_run, run_cli, tmp_path):
    import json

    from PIL import Image, ImageDraw

    run, _ = trained_run
    photos = tmp_path / "photos"
    photos.mkdir()
    page = Image.new("RGB", (300, 200), "white")
    ImageDraw.Draw(page).line([(120, 40), (150, 30), (150, 170)], fill="black", width=14)
    page.save(photos / "one.jpg")
    Image.new("RGB", (120, 90), "white").save(photos / "blank.png")
    result = run_cli("predict", run.path, photos, "--output", tmp_path / "readings.json",
                     "--debug-dir", tmp_path / "seen")
    assert result.code == 0, result.err
    assert "blank.png: no digit found" in result.out and "one.jpg: " in result.out and "top-3" in result.out
    readings = json.loads((tmp_path / "readings.json").read_text())
    assert [len(reading["digits"]) for reading in readings] == [0, 1]
    assert any(path.name.startswith("one-digit-0") for path in (tmp_path / "seen").iterdir())
    as_csv = run_cli("predict", run.path, photos / "one.jpg", "-o", tmp_path / "readings.csv")
    header, row = (tmp_path / "readings.csv").read_text().splitlines()
    assert header == "path,label,status,text,confidence,digits,top3"
    assert row.startswith(f"{photos / 'one.jpg'},,ok,") and len(row.split(",")[-1].split()) == 3
    assert as_csv.code == 0


def test_ensemble_tta_and_export_from_the_command_line(trained_run, run_cli, tmp_path):
    import json

    run, data = trained_run
    result = run_cli("ensemble", "--members", "2", "--data", data, "--model", "tiny-convnet", "--epochs", "1",
                     "--batch-size", "64", "--runs-dir", tmp_path / "runs")
    assert result.code == 0, result.err
    (folder,) = (tmp_path / "runs").iterdir()
    assert len(json.loads((folder / "ensemble.json").read_text())["members"]) == 2
    labelled = convert({"test": make_learnable_digits(40, seed=4)}, tmp_path / "labelled.npz")
    evaluated = run_cli("evaluate", folder, "--data", labelled, "--tta", "--out", tmp_path / "evaluation")
    assert evaluated.code == 0, evaluated.err
    assert "accuracy" in evaluated.out
    exported = run_cli("export", run.path, "--output", tmp_path / "model.onnx")
    assert exported.code == 0, exported.err
    submitted = run_cli("submit", tmp_path / "model.onnx", data / "test.csv", "-o", tmp_path / "submission.csv")
    assert submitted.code == 0 and len((tmp_path / "submission.csv").read_text().splitlines()) == 101


def test_resume_of_a_finished_run_is_refused_in_one_line(trained_run, run_cli):
    run, _ = trained_run
    result = run_cli("train", "--resume", run.path)
    assert result.code == 1
    assert result.err.strip().startswith("error: ") and "nothing to resume" in result.err


def test_resume_refuses_other_options_instead_of_dropping_them(trained_run, run_cli):
    run, _ = trained_run
    before = (run.path / "config.toml").read_text()
    result = run_cli("train", "--resume", run.path, "--epochs", "30", "--recipe", "accurate")
    assert result.code == 1
    assert result.err.strip() == ("error: a resumed run uses its own config.toml; "
                                  "recipe, epochs cannot be given with resume")
    assert (run.path / "config.toml").read_text() == before
