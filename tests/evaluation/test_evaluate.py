"""Tests of evaluation figures (digitlab.evaluation.metrics), their plots and the HTML report."""

from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import make_digits
from digitlab.data import pictures
from digitlab.data.dataset import Dataset
from digitlab.errors import DigitlabError, OutputExistsError
from digitlab.evaluation import figures
from digitlab.evaluation.metrics import Evaluation, confusion_matrix, evaluate
from digitlab.evaluation.report import write_report


def probabilities_for(predictions: list[int], confidences: list[float] | float = 0.9) -> np.ndarray:
    """Rows that give each predicted digit its confidence and share the rest evenly."""
    count = len(predictions)
    confidences = np.broadcast_to(np.asarray(confidences, dtype=np.float64), (count,))
    rows = np.repeat(((1 - confidences) / 9)[:, None], 10, axis=1)
    rows[np.arange(count), predictions] = confidences
    return rows.astype(np.float32)


# Worked by hand: true 0,0,0,1,1,2 predicted 0,0,1,1,2,2.
HAND_LABELS = [0, 0, 0, 1, 1, 2]
HAND_PREDICTIONS = [0, 0, 1, 1, 2, 2]


@pytest.fixture
def hand_made() -> Evaluation:
    return Evaluation(probabilities_for(HAND_PREDICTIONS), np.array(HAND_LABELS))


def test_confusion_matrix_of_hand_made_case(hand_made: Evaluation) -> None:
    expected = np.zeros((10, 10), dtype=int)
    expected[0, 0] = 2
    expected[0, 1] = 1
    expected[1, 1] = 1
    expected[1, 2] = 1
    expected[2, 2] = 1
    np.testing.assert_array_equal(hand_made.confusion, expected)
    np.testing.assert_array_equal(hand_made.predictions, HAND_PREDICTIONS)


def test_confusion_matrix_counts_like_a_plain_loop() -> None:
    generator = np.random.default_rng(3)
    labels = generator.integers(0, 10, 500)
    predictions = generator.integers(0, 10, 500)
    expected = np.zeros((10, 10), dtype=int)
    for true, predicted in zip(labels, predictions):
        expected[true, predicted] += 1
    np.testing.assert_array_equal(confusion_matrix(labels, predictions), expected)


def test_confusion_matrix_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="shapes"):
        confusion_matrix(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="0..9"):
        confusion_matrix(np.array([0, 10]), np.array([0, 1]))


def test_accuracy_precision_recall_f1_by_hand(hand_made: Evaluation) -> None:
    assert hand_made.accuracy == pytest.approx(4 / 6)
    assert hand_made.error_count == 2
    expected = {  # digit: (precision, recall, f1, support)
        0: (2 / 2, 2 / 3, 0.8, 3),
        1: (1 / 2, 1 / 2, 0.5, 2),
        2: (1 / 2, 1 / 1, 2 / 3, 1),
    }
    for row in hand_made.per_class:
        precision, recall, f1, support = expected.get(row["digit"], (0.0, 0.0, 0.0, 0))
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == support
    # Digits 3..9 occur neither as labels nor as predictions, so they do not count.
    assert hand_made.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_digit_only_predicted_counts_in_macro_f1_with_zero_scores() -> None:
    # true 0,0,1,1 predicted 0,9,1,1: digit 9 has no images, so its precision is 0 (0 of 1).
    evaluation = Evaluation(probabilities_for([0, 9, 1, 1]), np.array([0, 0, 1, 1]))
    nine = evaluation.per_class[9]
    assert (nine["precision"], nine["recall"], nine["f1"], nine["support"]) == (0, 0, 0, 0)
    zero_f1 = 2 * 1 * 0.5 / 1.5
    assert evaluation.macro_f1 == pytest.approx((zero_f1 + 1.0 + 0.0) / 3)


def test_loss_is_mean_cross_entropy(hand_made: Evaluation) -> None:
    # Four rows give the true digit 0.9, two give it the even share (1 - 0.9) / 9.
    expected = -(4 * math.log(0.9) + 2 * math.log(0.1 / 9)) / 6
    assert hand_made.loss == pytest.approx(expected, rel=1e-5)


def test_loss_clips_zero_probabilities() -> None:
    probabilities = np.zeros((2, 10), dtype=np.float32)
    probabilities[0, 3] = 1.0  # right and certain
    probabilities[1, 5] = 1.0  # wrong and certain: the true digit gets 0
    evaluation = Evaluation(probabilities, np.array([3, 4]))
    expected = (-math.log(1 - 1e-7) - math.log(1e-7)) / 2
    assert evaluation.loss == pytest.approx(expected, rel=1e-6)
    assert math.isfinite(evaluation.loss)


def test_mistakes_most_confident_first() -> None:
    labels = np.array([0, 1, 2, 3, 4, 5])
    predictions = [0, 7, 2, 8, 9, 6]  # images 1, 3, 4 and 5 are wrong
    confidences = [0.99, 0.5, 0.95, 0.9, 0.7, 0.9]
    evaluation = Evaluation(probabilities_for(predictions, confidences), labels)
    np.testing.assert_array_equal(evaluation.mistakes(), [3, 5, 4, 1])  # 3 and 5 tie: in order
    np.testing.assert_array_equal(evaluation.mistakes(2), [3, 5])
    np.testing.assert_allclose(evaluation.confidences, confidences, rtol=1e-6)
    perfect = Evaluation(probabilities_for([1, 2]), np.array([1, 2]))
    assert len(perfect.mistakes(36)) == 0


def test_as_dict_is_json_ready(hand_made: Evaluation) -> None:
    figures = json.loads(json.dumps(hand_made.as_dict()))
    assert figures["images"] == 6
    assert figures["errors"] == 2
    assert figures["accuracy"] == pytest.approx(4 / 6)
    assert figures["confusion"][0] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert len(figures["per_class"]) == 10
    assert "probabilities" not in figures and "predictions" not in figures


def test_evaluate_calls_a_function_in_batches() -> None:
    dataset = make_digits(25)
    batch_sizes = []

    def predict(images: np.ndarray) -> np.ndarray:
        batch_sizes.append(len(images))
        return probabilities_for([7] * len(images))

    evaluation = evaluate(predict, dataset, batch_size=10)
    assert batch_sizes == [10, 10, 5]
    assert evaluation.accuracy == pytest.approx(np.mean(dataset.labels == 7))
    assert evaluation.probabilities.dtype == np.float32
    assert evaluation.probabilities.shape == (25, 10)


def test_unlabelled_dataset_is_refused_by_name() -> None:
    unlabelled = Dataset(make_digits(5).images, None, name="kaggle-test")
    with pytest.raises(DigitlabError, match="kaggle-test.*no labels"):
        evaluate(lambda images: probabilities_for([0] * len(images)), unlabelled)


def test_outputs_that_are_not_probabilities_are_refused() -> None:
    dataset = make_digits(4)
    with pytest.raises(DigitlabError, match="softmax"):
        evaluate(lambda images: np.full((len(images), 10), 3.0), dataset)
    with pytest.raises(DigitlabError, match="shape"):
        evaluate(lambda images: np.full((len(images), 2), 0.5), dataset)
    with pytest.raises(DigitlabError, match="NaN"):
        evaluate(lambda images: np.full((len(images), 10), np.nan), dataset)


def test_training_curves_with_and_without_validation_and_learning_rate() -> None:
    full = pd.DataFrame({
        "epoch": [1, 2, 3],
        "loss": [0.9, 0.5, 0.3],
        "accuracy": [0.7, 0.85, 0.9],
        "val_loss": [0.6, 0.4, 0.45],
        "val_accuracy": [0.8, 0.88, 0.87],
        "learning_rate": [1e-3, 1e-3, 5e-4],
    })
    assert len(figures.training_curves(full).axes) == 3
    figure = figures.training_curves(full[["epoch", "loss", "accuracy"]])
    assert len(figure.axes) == 2
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend[0] == "training" and "validation" not in legend


def _kept_marks(figure) -> list[tuple[str, float]]:
    """Each panel's star: its legend label and the epoch it stands at."""
    marks = []
    for axis in figure.axes:
        for line in axis.get_lines():
            if line.get_marker() == "*":
                marks.append((line.get_label(), float(line.get_xdata()[0])))
    return marks


def test_training_curves_mark_the_epoch_kept_on_both_panels() -> None:
    # The lowest validation loss (epoch 2, the one kept) is not the best validation accuracy (epoch 3).
    history = pd.DataFrame({
        "epoch": [1, 2, 3, 4], "loss": [0.9, 0.5, 0.3, 0.2], "accuracy": [0.7, 0.85, 0.9, 0.95],
        "val_loss": [0.6, 0.35, 0.45, 0.5], "val_accuracy": [0.8, 0.88, 0.9, 0.87],
    })
    marks = _kept_marks(figures.training_curves(history, kept_epoch=2))
    assert marks == [("kept: epoch 2 (0.88)", 2.0), ("kept: epoch 2 (0.35)", 2.0)]
    # Without keep_best (or validation) the model is the last epoch's.
    assert [epoch for _, epoch in _kept_marks(figures.training_curves(history))] == [4.0, 4.0]


def test_a_runs_curves_mark_its_best_epoch(tmp_path) -> None:
    from digitlab.recipes.config import TrainingConfig
    from digitlab.runs.run import Run

    history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [0.9, 0.5, 0.3], "accuracy": [0.7, 0.85, 0.9],
                            "val_loss": [0.6, 0.4, 0.45], "val_accuracy": [0.8, 0.88, 0.89]})
    run = Run(tmp_path, TrainingConfig(), None, history, {"best_epoch": 2})
    assert [label for label, _ in _kept_marks(run.plot_curves())] == ["kept: epoch 2 (0.88)", "kept: epoch 2 (0.4)"]


@pytest.mark.parametrize("epochs", [1, 2, 3])
def test_training_curves_tick_whole_epochs_only(epochs: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    history = pd.DataFrame({"epoch": range(1, epochs + 1), "loss": [0.5] * epochs, "accuracy": [0.9] * epochs,
                            "val_loss": [0.4] * epochs, "val_accuracy": [0.9] * epochs,
                            "learning_rate": [1e-3] * epochs})
    figure = figures.training_curves(history)
    FigureCanvasAgg(figure).draw()
    for axis in figure.axes:
        low, high = axis.get_xlim()
        shown = [tick for tick in axis.get_xticks() if low <= tick <= high]
        assert shown and all(tick == int(tick) for tick in shown), shown
        assert 1 in shown

def test_confusion_figure_handles_digits_without_images() -> None:
    confusion = np.diag(np.arange(10)) * 10
    confusion[4, 9] = 3
    figure = figures.confusion_matrix_figure(confusion, normalize=True)
    axis = figure.axes[0]
    assert axis.get_xlabel() == "predicted" and axis.get_ylabel() == "true"
    texts = {text.get_text() for text in axis.texts}
    assert {"100.0", "93.0", "7.0"} <= texts  # digit 4: 40 right, 3 taken for 9
    counts = figures.confusion_matrix_figure(confusion, normalize=False)
    assert "90" in {text.get_text() for text in counts.axes[0].texts}


def test_mistakes_gallery_titles() -> None:
    images = make_digits(2).images
    figure = figures.mistakes_gallery(images, [4, 1], [9, 7], [0.973, 0.5])
    titles = [axis.get_title() for axis in figure.axes]
    assert titles[:2] == ["true 4 / predicted 9 (97%)", "true 1 / predicted 7 (50%)"]


def test_confusion_numbers_left_out_of_the_layout_move_nothing(tmp_path) -> None:
    confusion = np.diag(np.arange(10) + 990)
    confusion[0, 9] = confusion[9, 0] = 7  # numbers in the corners, where the layout is tightest
    pictures.save(figures.confusion_matrix_figure(confusion), tmp_path / "outside.png")
    figure = figures.confusion_matrix_figure(confusion)
    for text in figure.axes[0].texts:
        text.set_in_layout(True)
    pictures.save(figure, tmp_path / "inside.png")
    with Image.open(tmp_path / "outside.png") as outside, Image.open(tmp_path / "inside.png") as inside:
        np.testing.assert_array_equal(np.asarray(outside), np.asarray(inside))


def test_gallery_titles_sit_just_above_their_images() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    images = make_digits(8).images
    figure = figures.predictions_gallery(images, np.arange(8), np.full(8, 0.5), true_labels=np.zeros(8, int),
                                         columns=4, title="a gallery")
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    pad = matplotlib.rcParams["axes.titlepad"] * figure.dpi / 72
    (suptitle,) = figure.texts
    for axis in figure.axes:
        image_top = axis.get_window_extent(renderer).y1
        title = axis.title.get_window_extent(renderer)
        assert image_top < title.y0 < image_top + pad
        assert title.y1 < suptitle.get_window_extent(renderer).y0


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((28, 28)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])


def test_evaluate_a_keras_model_matches_its_predictions(tiny_model) -> None:
    dataset = make_digits(50)
    evaluation = evaluate(tiny_model, dataset, batch_size=16)
    expected = tiny_model.predict(dataset.images, verbose=0)
    np.testing.assert_allclose(evaluation.probabilities, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(evaluation.labels, dataset.labels)


def test_write_report_of_a_keras_model(tiny_model, tmp_path) -> None:
    dataset = make_digits(50)
    evaluation = evaluate(tiny_model, dataset)
    history = pd.DataFrame({
        "epoch": [1, 2], "loss": [2.3, 2.1], "accuracy": [0.1, 0.2],
        "val_loss": [2.2, 2.15], "val_accuracy": [0.12, 0.15], "learning_rate": [1e-3, 1e-3],
    })
    details = {"model": "tiny <dense>", "epochs": "2", "training time": "1 s"}
    folder = tmp_path / "run"
    report = write_report(folder, evaluation, dataset, history, "Tiny & untrained", details)

    assert report == folder / "report.html"
    names = ["curves.png", "confusion.png", "confusion-normalized.png", "mistakes.png"]
    for name in names:
        with Image.open(folder / name) as image:
            image.verify()
            assert image.format == "PNG"
    page = report.read_text(encoding="utf-8")
    for name in names:
        assert f'src="{name}"' in page
    assert "<title>Tiny &amp; untrained</title>" in page
    assert "tiny &lt;dense&gt;" in page and "<dense>" not in page
    assert '<table class="per-class">' in page
    assert page.count("<tr") >= 11  # header and ten digits
    assert f"{100 * evaluation.accuracy:.2f}%" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert not [path.name for path in folder.iterdir() if path.name.startswith(".")]

    with pytest.raises(OutputExistsError):
        write_report(folder, evaluation, dataset, history, "again", force=False)


def test_write_report_without_history_or_mistakes(tmp_path) -> None:
    dataset = make_digits(20)
    perfect = Evaluation(probabilities_for(dataset.labels.tolist(), 0.99), dataset.labels)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "mistakes.png").write_bytes(b"left by an earlier report")
    report = write_report(folder, perfect, dataset, None, "Perfect")
    assert sorted(path.name for path in folder.iterdir()) == [
        "confusion-normalized.png", "confusion.png", "report.html"
    ]
    page = report.read_text(encoding="utf-8")
    assert "No mistakes" in page and "mistakes.png" not in page and "curves.png" not in page


def test_write_report_refuses_another_dataset(tmp_path, hand_made: Evaluation) -> None:
    with pytest.raises(DigitlabError, match="generated"):
        write_report(tmp_path, hand_made, make_digits(7), None, "mismatch")
