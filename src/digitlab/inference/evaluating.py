"""Evaluating a model file, run folder or ensemble on labelled data, with its report."""

from __future__ import annotations

from pathlib import Path

from digitlab.data.sources import load
from digitlab.evaluation.metrics import Evaluation
from digitlab.evaluation.report import write_report
from digitlab.inference.classifier import load_model
from digitlab.outputs import check_new


def default_report_folder(model: Path, data_name: str, tta: bool = False) -> Path:
    """Where an evaluation's report goes unless told: beside the model (inside a run or ensemble
    folder), named after the data."""
    beside = model if model.is_dir() else model.parent
    return beside / f"evaluation-{data_name}{'-tta' if tta else ''}"


def evaluate_model(
    model: str | Path,
    data: str = "mnist:test",
    out: str | Path | None = None,
    tta: bool = False,
    force: bool = False,
    offline: bool = False,
    prefer_onnx: bool = False,
) -> tuple[Evaluation, Path]:
    """Evaluate `model` on the labelled source `data` and write the report (pictures and
    report.html) into `out`, by default `default_report_folder`; returns the evaluation and the
    report's path. An existing report folder is refused before anything is computed, unless
    `force`. `prefer_onnx`: see `digitlab.inference.classifier.load_model`."""
    model = Path(model)
    dataset = load(data, offline=offline)
    folder = Path(out) if out is not None else default_report_folder(model, dataset.name, tta)
    check_new(folder, force)
    evaluation = load_model(model, tta=tta, prefer_onnx=prefer_onnx).evaluate(dataset)
    report = write_report(folder, evaluation, dataset, None, title=f"{model.name} on {dataset.name}",
                          details={"model": str(model), "data": data,
                                   "test-time augmentation": "on" if tta else "off"})
    return evaluation, report
