"""The example notebooks, the seed notebooks among them, run from top to bottom on small data for one short epoch."""

import json
import re
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
    "DIGITLAB_EXAMPLE_TEST_LIMIT": "500",
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
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, as in Jupyter
    for name, value in SMALL_RUN.items():
        monkeypatch.setenv(name, value)
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.fixture(scope="module")
def small_kaggle_folder(tmp_path_factory):
    """Kaggle-layout train.csv (1,000 labelled digits) and test.csv (300 without labels) from MNIST."""
    import digitlab
    from digitlab.data.convert import convert

    folder = tmp_path_factory.mktemp("kaggle") / "digit-recognizer"
    mnist = digitlab.load_parts("mnist")  # DIGITLAB_DATA: these tests are marked mnist
    convert({"train": mnist["train"].subset(slice(0, 1000)), "test": mnist["test"].subset(slice(0, 300))},
            folder, to="csv", kaggle=True)
    return folder


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


def printed(book) -> str:
    """Everything the notebook printed or displayed as text, without terminal colours."""
    text = "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "")
                   for cell in book.cells for output in cell.get("outputs", []))
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# Each seed notebook: the pictures it draws at least, the text it must print (the parameter counts
# its seed printed, or its network's), and whether it writes a submission.
SEED_NOTEBOOKS = {
    "000-kaggle-three-conv-batchnorm.ipynb": (1, ["Total params: 187,018", "largest pixel value: 255"], True),
    "001-mnist-tiny-convnet.ipynb": (3, ["Total params: 1,815", "test accuracy: 0."], False),
    "002-kaggle-locally-connected.ipynb": (2, ["Total params: 66,142", "validation accuracy: 0."], False),
    "003-kaggle-four-conv-augmented.ipynb": (3, ["Total params: 814,970", "final accuracy: 0."], True),
    "004-mnist-five-conv-rmsprop.ipynb": (
        5, ["Total params: 1,022,858", "Test accuracy: 0.", "agrees on every test digit: True"], False),
}


@pytest.mark.parametrize("name", sorted(SEED_NOTEBOOKS))
def test_seed_notebook_runs(name, notebook_folder, small_kaggle_folder, monkeypatch):
    monkeypatch.setenv("DIGITLAB_EXAMPLE_KAGGLE_FOLDER", str(small_kaggle_folder))
    book = execute(f"seeds/{name}", notebook_folder)
    least_pictures, texts, submits = SEED_NOTEBOOKS[name]
    assert pictures(book) >= least_pictures
    output = printed(book)
    for text in texts:
        assert text in output
    (run,) = (notebook_folder / "runs").iterdir()
    assert (run / "model.keras").is_file()
    if submits:
        lines = (notebook_folder / "submission.csv").read_text().splitlines()
        assert lines[0] == "ImageId,Label" and lines[1].startswith("1,") and len(lines) == 301
