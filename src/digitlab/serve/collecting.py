"""A person's own digits, kept as the drawing page and the API send them: DIR/<label>/<name>.png.

That is the image-folder layout digitlab reads as labelled data, so `digitlab finetune RUN
--data DIR` learns from it as it is. Each example is the image as sent (decoded, turned upright
by its EXIF orientation and stored as PNG), under a new name: nothing is ever overwritten, and
a file appears whole or not at all.
"""

from __future__ import annotations

import io
import os
import secrets
import threading
from datetime import datetime
from pathlib import Path

from digitlab.data.formats.image_folder import is_image_file
from digitlab.errors import DigitlabError
from digitlab.shape import NUM_CLASSES

MAX_EXAMPLES = 20_000  # a collection this large is far past what fine-tuning wants; more is refused


class CollectionFull(DigitlabError):
    """The folder holds MAX_EXAMPLES examples already."""


class ExampleFolder:
    """The folder examples are saved in, with a count of each digit's examples."""

    def __init__(self, folder: str | Path, max_examples: int = MAX_EXAMPLES):
        self.folder = Path(folder).expanduser()
        if self.folder.exists() and not self.folder.is_dir():
            raise DigitlabError(f"--collect {self.folder}: it is a file, not a folder")
        entries = list(self.folder.iterdir()) if self.folder.is_dir() else []
        foreign = [entry.name for entry in entries
                   if entry.is_dir() and not entry.name.startswith(".") and entry.name not in _LABELS]
        if foreign:
            raise DigitlabError(f"--collect {self.folder}: it holds folders other than 0..9 "
                                f"({', '.join(foreign[:3])}); give an empty folder or one of collected digits")
        self.max_examples = max_examples
        self._lock = threading.Lock()
        self._counts = [self._count_on_disk(label) for label in range(NUM_CLASSES)]

    def _count_on_disk(self, label: int) -> int:
        folder = self.folder / str(label)
        if not folder.is_dir():
            return 0
        return sum(1 for entry in folder.iterdir() if entry.is_file() and is_image_file(entry))

    def counts(self) -> list[int]:
        with self._lock:
            return list(self._counts)

    def save(self, image_bytes: bytes, label: int) -> Path:
        """Keep one example; returns its path relative to the folder. The image must have been
        checked to be one (size limits included) before."""
        from PIL import Image, ImageOps

        if not 0 <= label < NUM_CLASSES:
            raise ValueError(f"label must be 0..9, got {label}")
        with Image.open(io.BytesIO(image_bytes)) as image:
            upright = ImageOps.exif_transpose(image)
            if upright.mode not in ("1", "L", "LA", "RGB", "RGBA"):
                upright = upright.convert("RGBA" if "A" in upright.getbands() else "RGB")
            buffer = io.BytesIO()
            upright.save(buffer, format="PNG")
        with self._lock:
            if sum(self._counts) >= self.max_examples:
                raise CollectionFull(f"{self.folder} holds {self.max_examples:,} examples, the most this server keeps")
            folder = self.folder / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            path = self._write_new(folder, buffer.getvalue())
            self._counts[label] += 1
        return path.relative_to(self.folder)

    @staticmethod
    def _write_new(folder: Path, content: bytes) -> Path:
        """Write `content` under a new name: into a hidden temporary file, then linked to a name
        that must not exist yet (a link fails rather than replace), so it appears whole. Where
        the file system has no links, the new name is created exclusively and written."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        temporary = folder / f".{stamp}-{secrets.token_hex(4)}.tmp"
        temporary.write_bytes(content)
        try:
            while True:
                path = folder / f"{stamp}-{secrets.token_hex(3)}.png"
                try:
                    os.link(temporary, path)
                    return path
                except FileExistsError:
                    continue
                except OSError:  # no hard links here (some network and FAT file systems)
                    with open(path, "xb") as output:
                        output.write(content)
                    return path
        finally:
            temporary.unlink(missing_ok=True)


_LABELS = {str(label) for label in range(NUM_CLASSES)}
