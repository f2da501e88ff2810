"""Outputs are written whole or not at all, and never replace a user's file unasked."""

import os

import pytest

from digitlab.errors import DigitlabError, OutputExistsError
from digitlab.outputs import write_bytes, write_file, write_folder


def test_failed_write_leaves_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")

    def crash(temporary):
        temporary.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(DigitlabError, match="cannot write .*model.bin: No space left on device"):
        write_file(target, crash, force=True)
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["model.bin"]


def test_existing_file_needs_force(tmp_path):
    target = tmp_path / "submission.csv"
    target.write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="pass --force"):
        write_bytes(target, b"new")
    assert target.read_bytes() == b"mine"
    write_bytes(target, b"new", force=True)
    assert target.read_bytes() == b"new"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_unwritable_folder_gives_clear_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(DigitlabError, match="cannot write"):
            write_bytes(folder / "out.csv", b"x")
    finally:
        folder.chmod(0o700)


def test_folder_replaced_whole_or_kept(tmp_path):
    target = tmp_path / "pngs"
    write_folder(target, lambda folder: (folder / "a.png").write_bytes(b"1"))

    def crash(folder):
        (folder / "b.png").write_bytes(b"2")
        raise OSError(5, "Input/output error")

    with pytest.raises(DigitlabError):
        write_folder(target, crash, force=True)
    assert sorted(path.name for path in target.iterdir()) == ["a.png"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pngs"]
    write_folder(target, lambda folder: (folder / "c.png").write_bytes(b"3"), force=True)
    assert sorted(path.name for path in target.iterdir()) == ["c.png"]


def test_destination_under_a_file_gives_clear_error(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(DigitlabError, match=r"cannot write .*runs/out.csv"):
        write_bytes(blocker / "out.csv", b"x")
    assert blocker.read_text() == "a file where a folder should be"


@pytest.mark.parametrize("stopped_at", ["moving the old folder aside", "moving the new folder in"])
def test_ctrl_c_while_a_folder_is_replaced_keeps_the_old_one(tmp_path, monkeypatch, stopped_at):
    from digitlab import outputs

    target = tmp_path / "pngs"
    target.mkdir()
    (target / "old.png").write_bytes(b"old")
    replace = os.replace
    calls = []

    def interrupted(source, destination):  # the first move, or the second, is cut short by Ctrl-C
        calls.append(source)
        if len(calls) == (1 if stopped_at == "moving the old folder aside" else 2):
            raise KeyboardInterrupt
        replace(source, destination)

    monkeypatch.setattr(outputs.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_folder(target, lambda folder: (folder / "new.png").write_bytes(b"new"), force=True)
    assert [path.name for path in tmp_path.iterdir()] == ["pngs"]
    assert [path.name for path in target.iterdir()] == ["old.png"]
