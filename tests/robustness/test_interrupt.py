"""Ctrl-C during a real `digitlab train`: it stops at once with its checkpoint whole, says how to
go on in one line, and `--resume` then finishes the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from conftest import make_learnable_digits
from digitlab.data.convert import convert
from digitlab.training import checkpoints

# Under a second an epoch for tiny-convnet; enough epochs that a busy machine cannot finish first.
EPOCHS, STEPS = 6, 200


def digitlab_command() -> list[str]:
    return [str(Path(sys.executable).parent / "digitlab")]


def interrupts_as_from_a_terminal() -> None:
    """Run in the child before digitlab starts: SIGINT unblocked and at its default, as a shell
    leaves it, whatever threads of this test process (servers, Ray) did to their own mask."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_the_checkpoint_and_resume_finishes_the_run(tmp_path):
    data = convert({"train": make_learnable_digits(300), "test": make_learnable_digits(60, seed=1)},
                   tmp_path / "learnable.npz")
    runs = tmp_path / "runs"
    environment = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [*digitlab_command(), "train", "--model", "tiny-convnet", "--data", str(data), "--epochs", str(EPOCHS),
         "--steps-per-epoch", str(STEPS), "--batch-size", "32", "--validation", "0.2", "--runs-dir", str(runs)],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=interrupts_as_from_a_terminal,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(runs.glob("*/checkpoints/last.npz")):
            assert process.poll() is None, f"training stopped before its first checkpoint: {process.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        time.sleep(0.3)  # into the next epoch
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        _, errors = process.communicate(timeout=20)
        stopped_within = time.monotonic() - interrupted
    finally:
        process.kill()
        process.wait()

    (folder,) = runs.iterdir()
    assert process.returncode != 0
    assert stopped_within < 8, f"took {stopped_within:.1f} s to stop"
    assert "Traceback" not in errors
    lines = [line for line in errors.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, errors
    assert lines[0].endswith(f"continue with: digitlab train --resume {folder}")
    assert not (folder / "metrics.json").exists()
    stopped_at = checkpoints.load(checkpoints.path(folder)).epoch
    assert 1 <= stopped_at < EPOCHS
    assert [path.name for path in (folder / "checkpoints").iterdir() if path.name.startswith(".")] == []

    resumed = subprocess.run([*digitlab_command(), "train", "--resume", str(folder)], env=environment,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    history = pd.read_csv(folder / "history.csv")
    assert list(history["epoch"]) == list(range(1, EPOCHS + 1))
    assert (folder / "metrics.json").is_file() and (folder / "model.keras").is_file()
