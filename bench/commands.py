"""Whole-process wall time of the everyday `digitlab` commands, against baselines from the same run.

Run: DIGITLAB_DATA=../shared/data/mnist python bench/commands.py [--model RUN] [--repeat 3] [--skip-keras-example]

Each command runs as people run it, `digitlab ...` in a process of its own (the console script
beside this Python), in a temporary working folder, and is timed from process start to exit:

    train                    the default recipe (runs go to ./runs)
    predict RUN photo.png    one photo
    predict RUN FOLDER       a folder of 1,000 photos
    evaluate RUN             on mnist:test, the report written to a temporary folder
    submit RUN test.csv      a Kaggle-style test.csv of 28,000 rows
    serve RUN                to its first answer: from process start until a POST /api/predict
                             with a PNG upload answers 200; then the server is stopped

Photos are MNIST test digits drawn dark on grey paper, upscaled to 200x200 with noise, as PNG;
they and test.csv are made once per run, deterministically. Baselines, same run, same way:
`python -c "import tensorflow"`, and bench/keras_example_script.py, the Keras "Simple MNIST
convnet" example to its first epoch at 99% test accuracy (skip it with --skip-keras-example).

Printed: the median seconds over `--repeat` runs of each quick command (default 3) and over
`--repeat-training` runs of train and the Keras example (default 1); the ratios predict one
photo / import tensorflow (target <= 0.5) and Keras example / train (target >= 12); the test
accuracy train reached (RUN/metrics.json) and the Keras example's last epoch and accuracy. With
--model RUN, training is skipped and RUN is used. A failing command stops everything, with its
stderr.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
DIGITLAB = Path(sys.executable).parent / "digitlab"
PHOTOS = 1000
KAGGLE_ROWS = 28_000
SERVE_TIMEOUT = 300.0
BOUNDARY = "digitlab-commands-boundary"


# ---------------------------------------------------------------------------- inputs


def read_idx(path: Path) -> np.ndarray:
    """The array in an IDX .gz file: a big-endian header of dimension sizes, then uint8 data."""
    raw = gzip.decompress(path.read_bytes())
    dimensions = raw[3]
    shape = np.frombuffer(raw, dtype=">u4", count=dimensions, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def photo_png(digit: np.ndarray, generator: np.random.Generator) -> bytes:
    """A 200x200 PNG of a white-on-black 28x28 `digit` as dark ink on noisy grey paper."""
    from PIL import Image

    ink = np.asarray(Image.fromarray(digit).resize((140, 140), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    paper, ink_level = generator.uniform(170, 225), generator.uniform(20, 70)
    page = np.full((200, 200), paper, dtype=np.float32)
    top, left = generator.integers(10, 51, size=2)
    page[top : top + 140, left : left + 140] -= (paper - ink_level) * np.clip(ink, 0, 1)
    page += generator.normal(0, 8, size=page.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def make_photos(data: Path, folder: Path) -> Path:
    """`folder`/photo.png and `folder`/photos/ with PHOTOS photos; returns the single photo."""
    digits = read_idx(data / "t10k-images-idx3-ubyte.gz")
    generator = np.random.default_rng(0)
    (folder / "photos").mkdir(parents=True)
    for number in range(PHOTOS):
        (folder / "photos" / f"{number:04d}.png").write_bytes(photo_png(digits[number], generator))
    single = folder / "photo.png"
    single.write_bytes(photo_png(digits[PHOTOS], generator))
    return single


def make_kaggle_csv(data: Path, path: Path) -> Path:
    """A Kaggle-style test.csv: a pixel0..pixel783 header, then KAGGLE_ROWS unlabelled images."""
    images = read_idx(data / "train-images-idx3-ubyte.gz")[:KAGGLE_ROWS].reshape(KAGGLE_ROWS, -1)
    header = ",".join(f"pixel{index}" for index in range(images.shape[1]))
    np.savetxt(path, images, fmt="%d", delimiter=",", header=header, comments="")
    return path


# ---------------------------------------------------------------------------- timing


def fail(command: list[str], returncode: int | None, stderr: str) -> None:
    tail = "\n".join(stderr.strip().splitlines()[-40:])
    raise SystemExit(f"FAILED (exit status {returncode}): {' '.join(command)}\n--- stderr (last lines) ---\n{tail}")


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    """Seconds `command` took as a whole process, and its stdout; stops the benchmark if it fails."""
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        fail(command, finished.returncode, finished.stderr + finished.stdout)
    return seconds, finished.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def multipart_upload(png: bytes) -> bytes:
    """A multipart/form-data body carrying `png` in the field `image`."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    return head + png + f"\r\n--{BOUNDARY}--\r\n".encode()


def answers(port: int, body: bytes) -> bool:
    """Whether POST /api/predict answers 200; False while the server is not listening yet."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/api/predict", body=body,
                           headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        status = connection.getresponse().status
        connection.close()
    except (OSError, http.client.HTTPException):
        return False
    if status not in (200, 503):
        raise SystemExit(f"FAILED: POST /api/predict answered {status}")
    return status == 200


def serve_first_answer(run: Path, photo: Path, cwd: Path) -> float:
    """Seconds from starting `digitlab serve RUN` to its first 200 answer to a PNG upload."""
    port = free_port()
    command = [str(DIGITLAB), "serve", str(run), "--port", str(port)]
    body = multipart_upload(photo.read_bytes())
    with tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        server = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        try:
            while not answers(port, body):
                if server.poll() is not None or time.perf_counter() - started > SERVE_TIMEOUT:
                    stderr.seek(0)
                    fail(command, server.poll(), stderr.read() or "(did not answer in time)")
                time.sleep(0.05)
            return time.perf_counter() - started
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


# ---------------------------------------------------------------------------- runs


def train_once(cwd: Path) -> tuple[float, Path]:
    """Seconds `digitlab train` took in a fresh folder under `cwd`, and the run folder it wrote."""
    folder = Path(tempfile.mkdtemp(prefix="train-", dir=cwd))
    seconds, _ = timed([str(DIGITLAB), "train"], folder)
    runs = [path for path in (folder / "runs").iterdir() if (path / "metrics.json").exists()]
    if len(runs) != 1:
        raise SystemExit(f"FAILED: expected one finished run in {folder / 'runs'}, found {len(runs)}")
    return seconds, runs[0]


def keras_example_once(cwd: Path) -> tuple[float, int, float]:
    """Seconds the Keras example took to 99% (or 15 epochs), its last epoch and test accuracy."""
    seconds, output = timed([sys.executable, str(BENCH / "keras_example_script.py")], cwd)
    epochs = re.findall(r"epoch (\d+): test accuracy ([\d.]+)", output)
    if not epochs:
        raise SystemExit(f"FAILED: the Keras example printed no test accuracy:\n{output[-2000:]}")
    return seconds, int(epochs[-1][0]), float(epochs[-1][1])


def test_accuracy(run: Path) -> str:
    metrics = json.loads((run / "metrics.json").read_text())
    accuracy = metrics.get("test_accuracy")
    return f"{accuracy:.4f}" if isinstance(accuracy, (int, float)) else "not recorded"


def ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.2f}" if numerator and denominator else "n/a"


def print_table(rows: list[tuple[str, float | None, int]]) -> None:
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{'command':<{width}}  {'seconds':>8}  runs")
    for name, seconds, runs in rows:
        shown = f"{seconds:8.2f}  {runs}" if seconds is not None else f"{'skipped':>8}"
        print(f"{name:<{width}}  {shown}")


class Bench:
    """Runs and times the commands in the working folder `work`, collecting the table's rows."""

    def __init__(self, work: Path, quick: int, slow: int):
        self.work, self.quick, self.slow = work, quick, slow
        self.rows: list[tuple[str, float | None, int]] = []

    def record(self, name: str, seconds: float | None, runs: int) -> float | None:
        self.rows.append((name, seconds, runs))
        if seconds is not None:
            print(f"  {name}: {seconds:.2f} s", flush=True)
        return seconds

    def command(self, name: str, command: list[str]) -> float:
        seconds = statistics.median(timed(command, self.work)[0] for _ in range(self.quick))
        return self.record(name, seconds, self.quick)

    def serve(self, run: Path, photo: Path) -> float:
        seconds = statistics.median(serve_first_answer(run, photo, self.work) for _ in range(self.quick))
        return self.record("digitlab serve RUN, to first answer", seconds, self.quick)

    def train(self) -> tuple[float, Path]:
        trainings = [train_once(self.work) for _ in range(self.slow)]
        seconds = statistics.median(seconds for seconds, _ in trainings)
        return self.record("digitlab train", seconds, self.slow), trainings[0][1]

    def keras_example(self) -> tuple[float, list[tuple[int, float]]]:
        runs = [keras_example_once(self.work) for _ in range(self.slow)]
        seconds = statistics.median(seconds for seconds, _, _ in runs)
        return self.record(EXAMPLE, seconds, self.slow), [(epoch, accuracy) for _, epoch, accuracy in runs]


EXAMPLE = "Keras example script to 99% test accuracy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="an existing run folder: skip training")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each quick command (median)")
    parser.add_argument("--repeat-training", type=int, default=1, help="runs of train and the Keras example")
    parser.add_argument("--skip-keras-example", action="store_true")
    arguments = parser.parse_args()
    if "DIGITLAB_DATA" not in os.environ:
        raise SystemExit("set DIGITLAB_DATA to the folder of MNIST's IDX .gz files")
    if not DIGITLAB.exists():
        raise SystemExit(f"no digitlab console script at {DIGITLAB}: install the project in this Python's environment")
    data = Path(os.environ["DIGITLAB_DATA"])

    with tempfile.TemporaryDirectory(prefix="digitlab-commands-") as temporary:
        work = Path(temporary)
        photo = make_photos(data, work / "inputs")
        test_csv = make_kaggle_csv(data, work / "inputs" / "test.csv")
        print(f"inputs: {PHOTOS:,} photos and a {KAGGLE_ROWS:,}-row test.csv in {work / 'inputs'}", flush=True)
        bench = Bench(work, arguments.repeat, arguments.repeat_training)
        digitlab = str(DIGITLAB)

        import_seconds = bench.command("python -c 'import tensorflow'", [sys.executable, "-c", "import tensorflow"])
        if arguments.model is None:
            train_seconds, run = bench.train()
        else:
            train_seconds, run = bench.record("digitlab train", None, 0), arguments.model.resolve()
        photo_seconds = bench.command("digitlab predict RUN photo.png", [digitlab, "predict", str(run), str(photo)])
        bench.command(f"digitlab predict RUN FOLDER ({PHOTOS:,} photos)",
                      [digitlab, "predict", str(run), str(photo.parent / "photos")])
        bench.command("digitlab evaluate RUN", [digitlab, "evaluate", str(run), "--out", str(work / "evaluation"),
                                                "--force"])
        bench.command(f"digitlab submit RUN test.csv ({KAGGLE_ROWS:,} rows)",
                      [digitlab, "submit", str(run), str(test_csv), "--output", str(work / "submission.csv"),
                       "--force"])
        bench.serve(run, photo)
        if arguments.skip_keras_example:
            example_seconds, example_runs = bench.record(EXAMPLE, None, 0), []
        else:
            example_seconds, example_runs = bench.keras_example()
        print_table(bench.rows)
        which = "trained above" if arguments.model is None else str(run)
        print(f"\nmodel ({which}): test accuracy {test_accuracy(run)}")

    for epoch, accuracy in example_runs:
        print(f"Keras example: stopped after epoch {epoch}, test accuracy {accuracy:.4f}")
    print(f"predict one photo / import tensorflow: {ratio(photo_seconds, import_seconds)} (target <= 0.5)")
    print(f"Keras example / train: {ratio(example_seconds, train_seconds)} (target >= 12)")


if __name__ == "__main__":
    main()
