"""Downloading a file from mirrors in turn: progress shown, SHA-256 checked, written atomically."""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from digitlab.errors import DigitlabError

CHUNK_BYTES = 1 << 16
TIMEOUT_SECONDS = 30


class DownloadError(DigitlabError):
    """No mirror gave a file with the expected checksum."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, destination: Path, progress_label: str) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    request = urllib.request.Request(url, headers={"User-Agent": "digitlab"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True, disable=not sys.stderr.isatty()) as progress:
            task = progress.add_task(progress_label, total=total)
            with open(destination, "wb") as output:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    output.write(chunk)
                    progress.advance(task, len(chunk))


def download(urls: list[str], destination: str | Path, sha256: str) -> Path:
    """Fetch the first of `urls` whose content has the given SHA-256 into `destination`.

    Each mirror is tried in turn; a broken connection or a wrong checksum moves on to the next.
    The file appears at `destination` only once verified.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.part")
    failures: list[str] = []
    try:
        for url in urls:
            print(f"downloading {url}", file=sys.stderr)
            try:
                _fetch(url, temporary, destination.name)
            except (urllib.error.URLError, OSError, ValueError) as error:
                failures.append(f"{url}: {getattr(error, 'reason', None) or error}")
                continue
            actual = sha256_of(temporary)
            if actual != sha256:
                failures.append(f"{url}: wrong checksum (sha256 {actual}, expected {sha256})")
                continue
            os.replace(temporary, destination)
            return destination
    finally:
        temporary.unlink(missing_ok=True)
    tried = "\n  ".join(failures) or "no mirrors configured"
    raise DownloadError(f"could not download {destination.name}; tried:\n  {tried}")


def mirrors_from_environment(default: list[str]) -> list[str]:
    """Base URLs from DIGITLAB_MIRRORS (space-separated) if set, else `default`."""
    configured = os.environ.get("DIGITLAB_MIRRORS", "").split()
    return configured or default
