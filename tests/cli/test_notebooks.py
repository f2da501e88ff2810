"""The example notebooks run from top to bottom, on a small subset of MNIST for one short epoch."""

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).parents[2] / "examples"
SMALL_RUN = {
    "DIGITLAB_EXAMPLE_EPOCHS": "1",
    "DIGITLAB_EXAMPLE_TRAIN_LIMIT": "1000",
    "DIGITLAB_EXAMPLE_STEPS_PER_EPOCH": "8",
}

pytestmark = [pytest.mark.mnist, pytest.mark.slow]


@pytest.fixture
def notebook_folder(mnist_folder, tmp_path, monkeypatch):
    """An empty working folder, and a "python3" kernel that is this Python, whatever else is installed."""
    kernels = tmp_path / "jupyter"
    spec = kernels / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (digitlab tests)",
        "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(kernels))  # searched before the user's kernels
    monkeypatch.setenv("DIGITLAB_DATA", str(mnist_folder))
    monkeypatch.setenv("DIGITLAB_OFFLINE", "1")
    for name, value in SMALL_RUN.items():
        monkeypatch.setenv(name, value)
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    work = tmp_path / "work"
    work.mkdir()
    return work


def execute(name: str, folder: Path):
    """Run every cell in `folder`; a failing cell raises CellExecutionError with its traceback."""
    book = nbformat.read(EXAMPLES / name, as_version=4)
    client = nbclient.NotebookClient(
        book, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    return book


def pictures(book) -> int:
    return sum("image/png" in output.get("data", {}) for cell in book.cells for output in cell.get("outputs", []))


def test_quickstart_runs(notebook_folder):
    book = execute("quickstart.ipynb", notebook_folder)
    assert pictures(book) >= 5  # samples, classes, curves, confusion matrix, mistakes
    (run,) = (notebook_folder / "runs").iterdir()
    assert (run / "model.keras").is_file() and run.name.endswith("-keras-example")
    assert (notebook_folder / "my-digit.png").is_file()
    lines = (notebook_folder / "submission.csv").read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 10_001


def test_kaggle_notebook_runs(notebook_folder):
    book = execute("kaggle_digit_recognizer.ipynb", notebook_folder)
    assert pictures(book) >= 5
    assert {path.name for path in (notebook_folder / "digit-recognizer").iterdir()} == {"train.csv", "test.csv"}
    lines = (notebook_folder / "submission.csv").read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 28_001
