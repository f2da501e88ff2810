"""The run folder: names claimed atomically, so runs started together never collide."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

from digitlab.recipes.config import TrainingConfig
from digitlab.runs import folder as folder_module
from digitlab.runs.folder import new_run_folder

FOLDERS_PER_PROCESS = 60


class FrozenClock:
    @staticmethod
    def now() -> datetime:
        return datetime(2026, 12, 2, 12, 0, 0)


def make_folders(runs_dir: str) -> list[str]:
    config = TrainingConfig(runs_dir=runs_dir, recipe="race")
    return [str(new_run_folder(config)) for _ in range(FOLDERS_PER_PROCESS)]


def test_processes_starting_runs_together_each_get_their_own_folder(tmp_path):
    with ProcessPoolExecutor(4, mp_context=get_context("spawn")) as pool:
        made = [folder for folders in pool.map(make_folders, [str(tmp_path)] * 4) for folder in folders]
    assert len(made) == len(set(made)) == 4 * FOLDERS_PER_PROCESS
    assert sorted(Path(folder).name for folder in made) == sorted(path.name for path in tmp_path.iterdir())


def test_a_taken_name_gets_the_next_number(tmp_path, monkeypatch):
    # Another process creates each name between a look and a mkdir: the name must be claimed, not checked.
    monkeypatch.setattr(Path, "exists", lambda self: False)
    monkeypatch.setattr(folder_module, "datetime", FrozenClock)
    config = TrainingConfig(runs_dir=str(tmp_path), recipe="taken")
    first, second, third = (new_run_folder(config) for _ in range(3))
    assert second.name == f"{first.name}-2" and third.name == f"{first.name}-3"
