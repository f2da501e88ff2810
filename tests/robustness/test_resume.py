"""Training that survives: per-epoch checkpoints, resume after a kill, determinism, atomic writes."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from conftest import make_learnable_digits
from digitlab.data.convert import convert
from digitlab.errors import DigitlabError
from digitlab.training import checkpoints

EPOCHS, STEPS = 4, 250  # about a second an epoch for tiny-convnet


@pytest.fixture(scope="module")
def learnable_npz(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return convert({"train": make_learnable_digits(400), "test": make_learnable_digits(100, seed=1)},
                   folder / "learnable.npz")


def options(data, runs_dir, **overrides):
    return {"data": str(data), "epochs": EPOCHS, "steps_per_epoch": STEPS, "batch_size": 32,
            "validation": 0.2, "deterministic": True, "runs_dir": str(runs_dir), "verbose": 0} | overrides


def model_variables(run):
    return [np.asarray(variable) for variable in run.model.variables]


def assert_identical(first, second):
    assert len(first) == len(second)
    for one, other in zip(first, second):
        assert one.dtype == other.dtype and np.array_equal(one, other)


def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(learnable_npz, tmp_path):
    import digitlab.training.api as api

    runs = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import digitlab.training.api
        digitlab.training.api.train("tiny-convnet", **{options(learnable_npz, runs)!r})
    """)
    process = subprocess.Popen([sys.executable, "-c", script], env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not list(runs.glob("*/checkpoints/last.npz")):
            assert process.poll() is None, "training stopped before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 90 s"
            time.sleep(0.05)
        time.sleep(0.4)  # into the second epoch
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    (folder,) = runs.iterdir()
    assert not (folder / "metrics.json").exists()
    stopped_at = checkpoints.load(checkpoints.path(folder)).epoch
    assert 1 <= stopped_at < EPOCHS
    # What a kill in the middle of writing a checkpoint leaves: a half-written temporary file.
    (checkpoints.path(folder).parent / ".last.tmp-0badf00d.npz").write_bytes(b"PK\x03\x04 cut short")

    resumed = api.train(resume=folder, verbose=0)
    assert not list(checkpoints.path(folder).parent.glob(".*.tmp-*"))
    history = pd.read_csv(folder / "history.csv")
    assert list(history["epoch"]) == list(range(1, EPOCHS + 1))
    assert resumed.metrics["epochs_run"] == EPOCHS and (folder / "model.keras").is_file()
    assert (folder / "report.html").is_file()

    whole = api.train("tiny-convnet", **options(learnable_npz, tmp_path / "whole"))
    assert_identical(model_variables(resumed), model_variables(whole))
    last_resumed = checkpoints.load(checkpoints.path(resumed.path))
    last_whole = checkpoints.load(checkpoints.path(whole.path))
    assert_identical(last_resumed.model_variables, last_whole.model_variables)
    assert_identical(last_resumed.optimizer_variables, last_whole.optimizer_variables)
    assert list(history["loss"]) == list(pd.read_csv(whole.path / "history.csv")["loss"])

    with pytest.raises(DigitlabError, match="has finished .metrics.json is there.; there is nothing to resume"):
        api.train(resume=folder)


def test_deterministic_twice_gives_identical_weights(learnable_npz, tmp_path):
    import digitlab.training.api as api

    settings = options(learnable_npz, tmp_path, epochs=2, steps_per_epoch=20)
    first, second = api.train("tiny-convnet", **settings), api.train("tiny-convnet", **settings)
    assert_identical(model_variables(first), model_variables(second))


def test_resume_refuses_a_folder_without_checkpoint_and_options_beside_resume(tmp_path):
    import digitlab.training.api as api

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.toml").write_text('model = "tiny-convnet"\n')
    with pytest.raises(DigitlabError, match="has no checkpoint .*stopped before its first epoch ended"):
        api.train(resume=folder)
    with pytest.raises(DigitlabError, match="epochs cannot be given with resume"):
        api.train(resume=folder, epochs=3)


def test_a_failing_checkpoint_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3)]
    target = checkpoints.path(tmp_path, "last")
    checkpoints.save(checkpoints.Checkpoint(1, weights, [np.int64(3)], [{"epoch": 1, "loss": 0.5}]), target)

    def disk_full_halfway(handle, **arrays):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints.np, "savez", disk_full_halfway)
    with pytest.raises(DigitlabError, match="No space left on device; nothing there was changed"):
        checkpoints.save(checkpoints.Checkpoint(2, [np.zeros(3)], [], []), target)
    monkeypatch.undo()
    kept = checkpoints.load(target)
    assert kept.epoch == 1 and kept.history == [{"epoch": 1, "loss": 0.5}]
    assert_identical(kept.model_variables, weights)
    assert [path.name for path in target.parent.iterdir()] == ["last.npz"]  # no temporary left behind


def test_a_run_stopped_while_finishing_resumes_and_finishes(learnable_npz, tmp_path, monkeypatch):
    from digitlab.evaluation import report_process
    from digitlab.training.api import train

    write_report = report_process.write_report

    def stopped(folder, evaluation, dataset, history, meanwhile, **options):
        meanwhile()  # the model is saved while the report is drawn
        raise KeyboardInterrupt  # Ctrl-C (or a kill) while the report is being written

    monkeypatch.setattr(report_process, "write_report", stopped)
    with pytest.raises(KeyboardInterrupt):
        train("tiny-convnet", **options(learnable_npz, tmp_path, epochs=2))
    (folder,) = tmp_path.iterdir()
    assert (folder / "model.keras").is_file() and not (folder / "metrics.json").exists()

    monkeypatch.setattr(report_process, "write_report", write_report)
    run = train(resume=folder, verbose=0)
    assert (folder / "report.html").is_file() and (folder / "metrics.json").is_file()
    assert len(run.history) == 2 and run.metrics["epochs_run"] == 2
    assert run.metrics["test_accuracy"] > 0.5
