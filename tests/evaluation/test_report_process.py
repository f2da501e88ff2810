"""A run's report drawn in a process of its own, with the work of this one going on meanwhile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_digits
from digitlab.evaluation import report, report_process
from digitlab.evaluation.metrics import Evaluation

REPORT_FILES = ["confusion-normalized.png", "confusion.png", "curves.png", "mistakes.png", "report.html"]


@pytest.fixture
def evaluated():
    dataset = make_digits(60)
    probabilities = np.random.default_rng(0).dirichlet(np.ones(10), size=len(dataset)).astype(np.float32)
    history = pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5], "accuracy": [0.6, 0.8]})
    return Evaluation(probabilities, dataset.labels), dataset, history


def test_the_started_process_draws_the_report_while_the_work_goes_on(evaluated, tmp_path, monkeypatch):
    evaluation, dataset, history = evaluated
    report_process.start()
    # Drawing here would fail: every file must come from the other process.
    monkeypatch.setattr(report, "write_report", lambda *arguments, **options: pytest.fail("drawn in this process"))
    done = []
    report_process.write_report(tmp_path, evaluation, dataset, history, lambda: done.append(True),
                                title="a run", kept_epoch=2)
    assert done == [True]
    assert sorted(path.name for path in tmp_path.iterdir()) == REPORT_FILES
    assert "a run" in (tmp_path / "report.html").read_text()


def test_without_a_process_or_when_it_fails_the_report_is_drawn_here(evaluated, tmp_path):
    evaluation, dataset, history = evaluated
    done = []
    report_process.write_report(tmp_path / "here", evaluation, dataset, history, lambda: done.append(1), title="x")
    report_process.start()
    report_process._waiting.kill()  # a process that died before the run finished
    report_process._waiting.wait()
    report_process.write_report(tmp_path / "after", evaluation, dataset, history, lambda: done.append(2), title="x")
    assert done == [1, 2]
    for folder in ("here", "after"):
        assert sorted(path.name for path in (tmp_path / folder).iterdir()) == REPORT_FILES


def test_an_error_while_the_report_is_drawn_stops_the_process_and_is_raised(evaluated, tmp_path):
    evaluation, dataset, history = evaluated
    report_process.start()
    process = report_process._waiting

    def failing() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        report_process.write_report(tmp_path, evaluation, dataset, history, failing, title="x")
    assert process.wait(timeout=30) != 0


def test_a_process_that_does_not_finish_in_time_is_stopped_and_the_report_drawn_here(evaluated, tmp_path,
                                                                                      monkeypatch):
    evaluation, dataset, history = evaluated
    monkeypatch.setattr(report_process, "DRAWING_TIMEOUT", 0.01)
    report_process.start()
    process = report_process._waiting
    report_process.write_report(tmp_path, evaluation, dataset, history, title="x")
    assert process.wait(timeout=30) < 0  # killed
    assert sorted(path.name for path in tmp_path.iterdir()) == REPORT_FILES
