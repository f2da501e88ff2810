"""Drawing a run's report in a process of its own, so that it holds up neither start nor finish.

`digitlab train` starts the process first (`start`): it imports matplotlib on one core while the
command imports TensorFlow on the other, then waits. When training ends, the run hands it the
report to draw (`write_report`) and saves its model while the pictures are drawn. Runs started
otherwise (from Python, ensemble members and sweep trials on Ray) find no process waiting and
draw their report themselves. The process is plain
`python -m digitlab.evaluation.report_process` reading one pickled request on standard input, not
multiprocessing, so a user's script is never imported again in it. Should it fail for any reason
(it could not start, digitlab is not importable there, a full disk), the report is written in this
process instead, which gives the error if there is one.
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas

    from digitlab.data.dataset import Dataset
    from digitlab.evaluation.metrics import Evaluation

__all__ = ["start", "write_report"]

DRAWING_TIMEOUT = 300  # seconds; a report takes a few
_waiting: subprocess.Popen | None = None


def start() -> None:
    """Start the process that draws the next report, unless one is waiting already."""
    global _waiting
    if _waiting is not None and _waiting.poll() is None:
        return
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    try:
        _waiting = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    except OSError:
        _waiting = None
    else:
        atexit.register(_waiting.kill)  # a run that never finished leaves none behind


def _take() -> subprocess.Popen | None:
    global _waiting
    process, _waiting = _waiting, None
    return process if process is not None and process.poll() is None else None


def write_report(
    folder: Path,
    evaluation: Evaluation,
    dataset: Dataset,
    history: pandas.DataFrame | None,
    meanwhile: Callable[[], None] = lambda: None,
    **options: Any,
) -> None:
    """`digitlab.evaluation.report.write_report(folder, evaluation, dataset, history, **options)`,
    drawn by the process `start` started if there is one, while `meanwhile` runs here."""
    process = _take()
    if process is not None:
        try:
            process.stdin.write(pickle.dumps((folder, evaluation, dataset, history, options)))
            process.stdin.close()
        except (OSError, pickle.PicklingError):
            process.kill()
            process = None
    try:
        meanwhile()
    except BaseException:
        if process is not None:
            process.kill()
        raise
    if process is not None:
        try:
            if process.wait(timeout=DRAWING_TIMEOUT) == 0:
                return
        except subprocess.TimeoutExpired:
            process.kill()  # stuck: drawn here instead
    from digitlab.evaluation.report import write_report as write_here

    write_here(folder, evaluation, dataset, history, **options)


def _serve_one_request() -> None:
    from digitlab.evaluation.report import write_report as write_here  # matplotlib, before the request comes

    folder, evaluation, dataset, history, options = pickle.load(sys.stdin.buffer)
    write_here(folder, evaluation, dataset, history, **options)


if __name__ == "__main__":
    _serve_one_request()
