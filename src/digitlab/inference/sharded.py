"""Predicting inputs too large for memory: shard by shard, on Ray Data or in this process.

The inputs are cut into shards: each data file (Kaggle CSV, IDX images file, .npz) is one, and
the images of an image folder (or image files given one by one) are cut into blocks of
`images_per_block`. Each shard's predictions go to their own file in the output folder,
part-00000.csv, part-00001.csv, ..., written atomically, with the columns of `digitlab predict`
(`id,label,p0..p9`, ids from 1) and ids counting on from the shard before, so the parts read in
order are the predictions of all the inputs as one. A block of image files answers every file:
its part adds the columns `path` and `status` ("ok", "no digit" or "unreadable: <reason>", as
`digitlab predict` gives them), and a file that holds no digit or is no image keeps its row and
its id, with no label or probabilities.

The folder also holds shards.json, the plan: the model, and each part's source and ids. A run
that stopped part-way continues when started again with the same model and inputs: a part file
that is there is finished (it only appears complete), so only the missing ones are computed.

With Ray, the shards stream through a pool of Ray Data actors, each holding the model and one
shard at a time, so memory stays bounded however large the input is.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.data.compressed import GZIP_MAGIC, first_bytes
from digitlab.data.formats import idx, image_folder
from digitlab.errors import DataError, DigitlabError, OutputExistsError
from digitlab.inference.columns import FIRST_ID
from digitlab.shape import NUM_CLASSES

__all__ = ["DEFAULT_IMAGES_PER_BLOCK", "PLAN_FILENAME", "Shard", "ShardedPrediction", "plan_shards",
           "predict_sharded", "read_predictions"]

PLAN_FILENAME = "shards.json"
PLAN_VERSION = 2  # 2: ids from 1, and image files answered one by one
DEFAULT_IMAGES_PER_BLOCK = 10_000
_DATA_SUFFIXES = (".csv", ".csv.gz", ".npz")
_IDX_HEADER = 16  # magic number and the three sizes of an IDX images file


@dataclass(frozen=True)
class Shard:
    """One piece of the input: a data file, or a block of image files; its ids start at `first_id`."""

    number: int
    source: str
    first_id: int
    count: int
    files: tuple[str, ...] = ()  # a block of image files; empty for a data file

    @property
    def part_name(self) -> str:
        return f"part-{self.number:05d}.csv"


@dataclass
class ShardedPrediction:
    """What `predict_sharded` did: the folder, the plan, and how many shards it computed now."""

    folder: Path
    shards: list[Shard]
    computed: int
    images_computed: int
    seconds: float

    @property
    def skipped(self) -> int:
        return len(self.shards) - self.computed

    @property
    def images(self) -> int:
        return sum(shard.count for shard in self.shards)


# --- the plan ------------------------------------------------------------------------------


def _is_data_file(path: Path) -> bool:
    return path.name.lower().endswith(_DATA_SUFFIXES) or idx.kind_of(path) == "images"


def _count_images(path: Path) -> int:
    """How many images a data file holds, read cheaply where the format allows."""
    name = path.name.lower()
    if idx.kind_of(path) == "images":
        opener = gzip.open if first_bytes(path, 2) == GZIP_MAGIC else open
        with opener(path, "rb") as handle:
            header = handle.read(_IDX_HEADER)
        if len(header) < _IDX_HEADER:
            raise DataError(path, f"truncated IDX header: {len(header)} bytes, needs {_IDX_HEADER}")
        return struct.unpack(">I", header[4:8])[0]
    if name.endswith((".csv", ".csv.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        lines, last = 0, b"\n"
        with opener(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        return lines + (last != b"\n") - 1  # the header is not an image
    from digitlab.inference.predict import images_to_predict

    return len(images_to_predict(path))


def _input_groups(inputs: Sequence[str | Path]) -> list[tuple[str, list[Path]]]:
    """The inputs as (source, data files or image files) groups, in order."""
    groups: list[tuple[str, list[Path]]] = []
    loose_images: list[Path] = []
    for text in inputs:
        path = Path(text).expanduser()
        if not path.exists():
            raise DataError(path, "no such file or folder")
        if path.is_file() and image_folder.is_image_file(path):
            loose_images.append(path)
            continue
        if loose_images:
            groups.append(("image files", loose_images))
            loose_images = []
        if path.is_file():
            if not _is_data_file(path):
                raise DataError(path, "unknown format: expected a Kaggle .csv, an IDX images file, an .npz or an image")
            groups.append((str(path), [path]))
            continue
        entries = sorted(entry for entry in path.iterdir() if not entry.name.startswith("."))
        data_files = [entry for entry in entries if entry.is_file() and _is_data_file(entry)]
        if data_files:
            groups.extend((str(file), [file]) for file in data_files)
        else:
            groups.append((str(path), image_folder.ordered_files(path)[0]))
    if loose_images:
        groups.append(("image files", loose_images))
    return groups


def plan_shards(inputs: Sequence[str | Path], images_per_block: int = DEFAULT_IMAGES_PER_BLOCK) -> list[Shard]:
    """The shards of `inputs` (files and folders), in order, with their ids.

    A folder of data files gives one shard per file, in name order; a folder of images (flat,
    or in label folders 0..9) gives blocks of `images_per_block` in the order `digitlab predict`
    reads them.
    """
    if isinstance(images_per_block, bool) or not isinstance(images_per_block, int) or images_per_block < 1:
        raise DigitlabError(f"images per block must be a whole number of at least 1, got {images_per_block!r}")
    if not inputs:
        raise DigitlabError("no inputs to predict")
    shards: list[Shard] = []
    next_id = FIRST_ID
    for source, files in _input_groups(inputs):
        if len(files) == 1 and _is_data_file(files[0]) and not image_folder.is_image_file(files[0]):
            count = _count_images(files[0])
            blocks = [(str(files[0].resolve()), count, ())]
        else:
            blocks = [(str(Path(source).resolve()) if source != "image files" else source,
                       len(files[start:start + images_per_block]),
                       tuple(str(file.resolve()) for file in files[start:start + images_per_block]))
                      for start in range(0, len(files), images_per_block)]
        for block_source, count, block_files in blocks:
            shards.append(Shard(len(shards), block_source, next_id, count, block_files))
            next_id += count
    return shards


def read_shard(shard: Shard) -> np.ndarray:
    """A data file's images, uint8 (N, 28, 28); checked to be as many as the plan says. (A block
    of image files is read file by file, each answered with its status: see `predict_shard`.)"""
    from digitlab.inference.predict import images_to_predict

    images = images_to_predict(shard.source).images
    if len(images) != shard.count:
        raise DataError(shard.source, f"holds {len(images)} images, but {shard.count} when the work was planned; "
                        "was it changed? Start again with --force")
    return images


def predict_shard(shard: Shard, predict: Callable[[np.ndarray], np.ndarray], folder: Path) -> int:
    """Predict one shard and write its part file atomically; the number of images (or files)."""
    from digitlab.data.dataset import Dataset
    from digitlab.inference.predict import write_file_predictions, write_predictions
    from digitlab.recognition.batch import single_digits

    if shard.files:
        digits, statuses = single_digits(shard.files)
        probabilities = predict(digits) if len(digits) else np.zeros((0, NUM_CLASSES), dtype=np.float32)
        write_file_predictions(folder / shard.part_name, list(shard.files), statuses, probabilities,
                               force=True, first_id=shard.first_id)
        return len(shard.files)
    images = read_shard(shard)
    probabilities = predict(images)
    write_predictions(folder / shard.part_name, Dataset(images, None, name=shard.part_name), probabilities,
                      force=True, first_id=shard.first_id)
    return len(images)


def _plan_record(model: Path, shards: list[Shard], tta: bool) -> dict[str, Any]:
    return {"format": "digitlab-shards", "version": PLAN_VERSION, "model": str(model.resolve()), "tta": tta,
            "shards": [dataclasses.asdict(shard) | {"files": list(shard.files), "part": shard.part_name}
                       for shard in shards]}


def _prepare_folder(folder: Path, record: dict[str, Any], force: bool) -> None:
    """Make `folder` ready: new, or holding this very plan (a resume); anything else needs `force`."""
    from digitlab.outputs import write_text

    plan_file = folder / PLAN_FILENAME
    if folder.exists() and not folder.is_dir():
        raise DigitlabError(f"{folder} is a file; predictions by shard go to a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        if not plan_file.is_file():
            raise OutputExistsError(folder)
        try:
            previous = json.loads(plan_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if previous != record:
            raise DigitlabError(f"{folder} holds the predictions of other inputs or another model "
                                f"({PLAN_FILENAME} differs); give another folder, or --force to start again")
        return
    if folder.is_dir() and force:
        for entry in folder.iterdir():
            if entry.name == PLAN_FILENAME or (entry.name.startswith("part-") and entry.suffix == ".csv"):
                entry.unlink()
            elif entry.name.startswith(".part-"):  # a temporary file left by a killed writer
                entry.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    write_text(plan_file, json.dumps(record, indent=1) + "\n", force=True)


# --- running -------------------------------------------------------------------------------


class _ShardPredictor:
    """A Ray Data actor: loads the model once, then predicts the shards it is handed, one at a time."""

    def __init__(self, model: str, folder: str, shards: list[Shard], tta: bool, threads: int) -> None:
        from digitlab.compute.devices import configure_threads

        configure_threads(threads)  # as many threads as CPUs Ray gave this actor
        from digitlab.inference.classifier import load_model

        self.predict = load_model(model, tta=tta, prefer_onnx=True).predict_function
        self.folder = Path(folder)
        self.shards = shards

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        numbers, counts, errors = [int(number) for number in batch["shard"]], [], []
        for number in numbers:
            try:
                counts.append(predict_shard(self.shards[number], self.predict, self.folder))
                errors.append("")
            except DigitlabError as error:  # sent back as its line: Ray would wrap it in a traceback
                counts.append(0)
                errors.append(str(error))
        return {"shard": np.array(numbers, dtype=np.int64), "images": np.array(counts, dtype=np.int64),
                "error": np.array(errors, dtype=object)}


def _run_on_ray(model: Path, folder: Path, shards: list[Shard], pending: list[Shard], tta: bool,
                address: str | None, workers: int | None, cpus_per_worker: int,
                on_shard: Callable[[Shard], None]) -> None:
    from digitlab.compute.cluster import connected

    with connected(address) as ray:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # digitlab reports progress by shard
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus_per_worker)
        workers = min(workers, len(pending))
        numbers = ray.data.from_items([{"shard": shard.number} for shard in pending],
                                      override_num_blocks=len(pending))
        predicted = numbers.map_batches(
            _ShardPredictor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
            fn_constructor_kwargs={"model": str(model.resolve()), "folder": str(folder.resolve()),
                                   "shards": shards, "tta": tta, "threads": cpus_per_worker},
        )
        try:
            for row in predicted.iter_rows():
                if row["error"]:
                    raise DigitlabError(row["error"])
                on_shard(shards[int(row["shard"])])
        except Exception as error:  # a worker's error arrives wrapped by Ray
            cause = error
            while cause.__cause__ is not None and not isinstance(cause, DigitlabError):
                cause = cause.__cause__
            if isinstance(cause, DigitlabError):
                raise cause from None
            raise


def predict_sharded(
    model: str | Path,
    inputs: Sequence[str | Path],
    folder: str | Path,
    *,
    ray: bool = True,
    ray_address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: int = 1,
    images_per_block: int = DEFAULT_IMAGES_PER_BLOCK,
    tta: bool = False,
    force: bool = False,
    on_shard: Callable[[Shard, int, int], None] | None = None,
) -> ShardedPrediction:
    """Predict every image of `inputs` with `model`, one part file per shard in `folder`.

    With `ray`, on Ray Data: `workers` actors (default: as many as the cluster has CPUs for)
    of `cpus_per_worker` CPUs each; without, shard after shard in this process. A folder with
    this plan's parts already there resumes; any other existing folder needs `force`.
    `on_shard(shard, shards_done, shards_total)` is called as each shard finishes.
    """
    if ray:
        from digitlab.compute.cluster import import_ray

        import_ray()  # a missing extra is reported before any work
    model, folder = Path(model), Path(folder)
    if not model.exists():
        raise DigitlabError(f"{model}: no such model file or folder")
    shards = plan_shards(inputs, images_per_block)
    _prepare_folder(folder, _plan_record(model, shards, tta), force)
    pending = [shard for shard in shards if not (folder / shard.part_name).is_file()]
    done = len(shards) - len(pending)
    started = time.perf_counter()

    def finished(shard: Shard) -> None:
        nonlocal done
        done += 1
        if on_shard is not None:
            on_shard(shard, done, len(shards))

    if pending and ray:
        _run_on_ray(model, folder, shards, pending, tta, ray_address, workers, cpus_per_worker, finished)
    elif pending:
        from digitlab.inference.classifier import load_model

        predict = load_model(model, tta=tta, prefer_onnx=True).predict_function
        for shard in pending:
            predict_shard(shard, predict, folder)
            finished(shard)
    return ShardedPrediction(folder, shards, len(pending), sum(shard.count for shard in pending),
                             time.perf_counter() - started)


def read_predictions(folder: str | Path, output: str | Path | None = None, force: bool = False):
    """The part files of `folder` read in order, as one table (a pandas DataFrame), the same as
    `digitlab predict` writes for all the inputs at once; with `output`, also written there as one CSV."""
    import pandas as pd

    from digitlab.outputs import write_text

    folder = Path(folder)
    plan_file = folder / PLAN_FILENAME
    if not plan_file.is_file():
        raise DigitlabError(f"{folder} holds no {PLAN_FILENAME}; it is not a folder of predictions by shard")
    parts = [folder / entry["part"] for entry in json.loads(plan_file.read_text(encoding="utf-8"))["shards"]]
    missing = [part.name for part in parts if not part.is_file()]
    if missing:
        raise DigitlabError(f"{folder} is unfinished: {len(missing)} of {len(parts)} parts are missing, "
                            f"such as {missing[0]}; run the same prediction again to finish it")
    table = pd.concat([pd.read_csv(part, dtype=str) for part in parts], ignore_index=True)
    if output is not None:
        write_text(output, table.to_csv(index=False, lineterminator="\n"), force)
    return table
