"""Writing to a full disk or a read-only one: one clear line naming the file and the reason, the
previous file kept as it was, and no temporary file left behind. Runs on a real tiny tmpfs, so it
needs permission to mount (root with CAP_SYS_ADMIN); elsewhere it is skipped."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import make_digits
from digitlab.data.convert import convert

PREVIOUS = b"the previous file\n"


def _mount(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *arguments], capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs, unmounted afterwards."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here (no CAP_SYS_ADMIN)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> None:
    """Take every free byte of the file system holding `folder`."""
    with open(folder / "filler", "wb", buffering=0) as handle:
        while True:
            try:
                handle.write(b"\0" * 4096)
            except OSError as error:
                assert error.errno == errno.ENOSPC
                return


def make_read_only(folder: Path) -> None:
    remounted = _mount("-o", "remount,ro", str(folder))
    assert remounted.returncode == 0, remounted.stderr


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    """A small untrained Keras model and 60 images as an .npz source."""
    from digitlab import models

    folder = tmp_path_factory.mktemp("inputs")
    model = models.create("tiny-convnet")
    model.save(folder / "model.keras")
    data = convert({"train": make_digits(60)}, folder / "digits.npz")
    return folder / "model.keras", data


COMMANDS = {
    "prediction": lambda model, data, target: ["predict", model, data, "-o", target],
    "submission": lambda model, data, target: ["submit", model, data, "-o", target],
    "converted dataset": lambda model, data, target: ["data", "convert", data, target, "--to", "csv"],
    "model": lambda model, data, target: ["export", model, "--format", "onnx", "-o", target],
}
TARGETS = {"prediction": "predictions.csv", "submission": "submission.csv",
           "converted dataset": "converted.csv", "model": "model.onnx"}
REASONS = {"full": "No space left on device", "read-only": "Read-only file system"}


@pytest.mark.parametrize("reason", ["full", "read-only"])
@pytest.mark.parametrize("output", list(COMMANDS))
def test_a_write_that_does_not_fit_keeps_the_previous_file(output, reason, small_disk, model_and_data, run_cli):
    if output == "model":
        pytest.importorskip("tf2onnx")
    model, data = model_and_data
    target = small_disk / TARGETS[output]
    target.write_bytes(PREVIOUS)
    if reason == "full":
        fill(small_disk)
    else:
        make_read_only(small_disk)
    before = sorted(path.name for path in small_disk.iterdir())

    result = run_cli(*COMMANDS[output](model, data, target), "--force")

    assert result.code == 1
    message = result.err.strip()
    assert message == f"error: cannot write {target}: {REASONS[reason]}; nothing there was changed"
    assert "Traceback" not in result.err
    assert target.read_bytes() == PREVIOUS
    assert sorted(path.name for path in small_disk.iterdir()) == before
