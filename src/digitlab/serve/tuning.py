"""Fine-tuning from the drawing page: one job at a time, in a background thread, while serving.

`POST /api/finetune` starts `digitlab.training.finetune.finetune` on the collected examples,
from the model the server started with (so a second fine-tune, on more examples, starts afresh
rather than from the first); `GET /api/finetune` says how far it is. When it finishes, the
server reads with the new model from the next request on: no restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitlab.errors import DigitlabError

logger = logging.getLogger(__name__)


@dataclass
class ServedModel:
    """The model the server reads with; swapped whole when a fine-tune finishes."""

    predict_function: Callable[[Any], Any]
    name: str
    path: Path | None = None  # what it was loaded from: fine-tuning starts from it


@dataclass
class TuningJob:
    """The state of the latest fine-tune, as GET /api/finetune shows it."""

    state: str = "idle"  # idle, running, finished or failed
    started: float | None = None
    lines: list[str] = field(default_factory=list)
    run: str | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        seconds = None if self.started is None else round(time.time() - self.started, 1)
        return {"state": self.state, "seconds": seconds, "log": self.lines[-40:], "run": self.run,
                "metrics": self.metrics, "error": self.error}


class Tuner:
    """Runs fine-tunes of the served model on the collected examples, one at a time."""

    def __init__(self, served: ServedModel, examples_folder: Path, runs_dir: Path,
                 load: Callable[[Path], ServedModel], options: dict[str, Any] | None = None):
        self.served = served
        self.base = served.path  # every fine-tune starts from the model the server started with
        self.options = dict(options or {})  # finetune's options
        self.examples_folder = examples_folder
        self.runs_dir = runs_dir
        self.load = load
        self.job = TuningJob()
        self._lock = threading.Lock()

    def start(self) -> TuningJob:
        """Start a fine-tune; a DigitlabError if one is running or the served model cannot be tuned."""
        with self._lock:
            if self.job.state == "running":
                raise DigitlabError("a fine-tune is running already; wait for it to finish")
            if self.base is None:
                raise DigitlabError("the served model was not loaded from a file, so there is nothing to fine-tune")
            self.job = TuningJob(state="running", started=time.time())
            job = self.job
        threading.Thread(target=self._run, args=(job, self.base), name="digitlab-finetune", daemon=True).start()
        return job

    def _run(self, job: TuningJob, base: Path) -> None:
        from digitlab.training.finetune import finetune

        try:
            run = finetune(base, self.examples_folder, runs_dir=self.runs_dir, say=job.lines.append, **self.options)
            self.served = self.load(run.path)
            job.run, job.metrics = str(run.path), {key: value for key, value in run.metrics.items()
                                                   if isinstance(value, (int, float, str)) or value is None}
            job.state = "finished"
            logger.info("fine-tuned: now serving %s", run.path)
        except DigitlabError as error:
            job.error, job.state = str(error), "failed"
        except Exception as error:  # the server goes on with the model it had
            logger.exception("fine-tuning failed")
            job.error, job.state = f"fine-tuning failed: {error}", "failed"
