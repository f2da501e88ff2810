"""Downloads come from mirrors in turn, are verified by SHA-256, and land atomically.

Every server here is a local HTTP server on 127.0.0.1 serving files from a temporary folder.
"""

import functools
import hashlib
import http.server
import shutil
import threading

import pytest

import digitlab
from conftest import make_digits
from digitlab.data import named
from digitlab.data.convert import convert
from digitlab.data.download import DownloadError, download
from digitlab.errors import DataNotFoundError


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(folder) -> base URL of a local HTTP server for that folder."""
    servers = []

    def start(folder):
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def good_and_bad_mirrors(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    convert({"train": make_digits(30)}, good, to="idx")
    bad.mkdir()
    for path in good.iterdir():
        data = bytearray(path.read_bytes())
        data[-12] ^= 0xFF  # one flipped byte, as a broken mirror might serve
        (bad / path.name).write_bytes(bytes(data))
    return good, bad


def test_download_verifies_and_writes(tmp_path, serve, good_and_bad_mirrors):
    good, _ = good_and_bad_mirrors
    source = good / "train-images-idx3-ubyte.gz"
    target = tmp_path / "cache" / source.name
    download([serve(good) + source.name], target, sha256(source))
    assert target.read_bytes() == source.read_bytes()


def test_corrupted_file_is_rejected_and_next_mirror_used(tmp_path, serve, good_and_bad_mirrors):
    good, bad = good_and_bad_mirrors
    source = good / "train-images-idx3-ubyte.gz"
    target = tmp_path / "cache" / source.name
    with pytest.raises(DownloadError, match="wrong checksum"):
        download([serve(bad) + source.name], target, sha256(source))
    assert not target.exists() and list(target.parent.iterdir()) == []
    download([serve(bad) + source.name, serve(good) + source.name], target, sha256(source))
    assert sha256(target) == sha256(source)


def test_unreachable_mirror_then_next(tmp_path, serve, good_and_bad_mirrors):
    good, _ = good_and_bad_mirrors
    source = good / "train-labels-idx1-ubyte.gz"
    target = tmp_path / source.name
    missing = serve(tmp_path / "empty-folder-that-404s")
    download(["http://127.0.0.1:9/" + source.name, missing + source.name, serve(good) + source.name],
             target, sha256(source))
    assert target.read_bytes() == source.read_bytes()


def test_all_mirrors_failing_names_each(tmp_path):
    with pytest.raises(DownloadError) as caught:
        download(["http://127.0.0.1:9/a.gz", "http://127.0.0.1:9/b.gz"], tmp_path / "a.gz", "0" * 64)
    assert "http://127.0.0.1:9/a.gz" in str(caught.value) and "http://127.0.0.1:9/b.gz" in str(caught.value)


@pytest.fixture
def small_named_dataset(monkeypatch, good_and_bad_mirrors):
    """A named dataset 'tiny' whose files are generated, so the whole path runs without MNIST."""
    good, _ = good_and_bad_mirrors
    files = tuple(named.DataFile(path.name, sha256(path), "unused") for path in sorted(good.iterdir()))
    tiny = named.NamedDataset("tiny", files, mirrors=())
    monkeypatch.setitem(named.NAMED_DATASETS, "tiny", tiny)
    monkeypatch.delenv("DIGITLAB_DATA", raising=False)
    return good


def test_named_dataset_downloads_into_cache_once(monkeypatch, serve, small_named_dataset, good_and_bad_mirrors):
    _, bad = good_and_bad_mirrors
    monkeypatch.setenv("DIGITLAB_MIRRORS", f"http://127.0.0.1:9/ {serve(bad)} {serve(small_named_dataset)}")
    first = digitlab.load("tiny")
    assert len(first) == 30
    cached = named.cache_root() / "tiny"
    assert sorted(path.name for path in cached.iterdir()) == sorted(path.name for path in small_named_dataset.iterdir())
    monkeypatch.setenv("DIGITLAB_MIRRORS", "http://127.0.0.1:9/")  # no network needed any more
    assert len(digitlab.load("tiny", offline=True)) == 30


def test_offline_error_says_which_files_go_where(small_named_dataset, run_cli):
    result = run_cli("--offline", "data", "info", "tiny")
    assert result.code == 1
    assert "dataset 'tiny' not found: offline" in result.err
    assert "train-images-idx3-ubyte.gz" in result.err and "DIGITLAB_DATA" in result.err
    assert str(named.cache_root() / "tiny") in result.err


def test_damaged_local_copy_is_reported(tmp_path, monkeypatch, small_named_dataset, good_and_bad_mirrors):
    _, bad = good_and_bad_mirrors
    monkeypatch.setenv("DIGITLAB_DATA", str(bad))
    with pytest.raises(digitlab.DigitlabError, match="checksum mismatch"):
        digitlab.load("tiny")


@pytest.mark.mnist
def test_real_mnist_downloads_from_a_mirror_into_an_empty_cache(monkeypatch, serve, mnist_folder, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(mnist_folder, mirror)
    monkeypatch.delenv("DIGITLAB_DATA", raising=False)
    monkeypatch.setenv("DIGITLAB_MIRRORS", "http://127.0.0.1:9/ " + serve(mirror))
    parts = digitlab.load_parts("mnist")
    assert (len(parts["train"]), len(parts["test"])) == (60000, 10000)


def test_missing_named_dataset_when_mirrors_fail(small_named_dataset, monkeypatch):
    with pytest.raises(DataNotFoundError, match="could not download"):
        digitlab.load("tiny")
