"""Enrolment photos kept beside the gallery, one file per content (``<sha256><ext>``), so that
``facestream people reembed`` can rebuild every embedding for another model from the very photos enrolled."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path


class PhotoStore:
    """A folder of photos named by the sha256 of their bytes; a photo is written once, atomically."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def put(self, source: str | os.PathLike, digest: str) -> str:
        """Keep ``source`` (whose sha256 is ``digest``) unless already kept; returns its name in the store."""
        name = f"{digest}{Path(source).suffix.lower()}"
        final = self.folder / name
        if final.is_file():
            return name
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)  # a crash leaves the whole photo or none, never half of one
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return name

    def put_bytes(self, data: bytes, suffix: str) -> tuple[str, Path]:
        """Keep a photo given as bytes (an upload, a crop); returns its name in the store and its path there."""
        digest = hashlib.sha256(data).hexdigest()
        name = f"{digest}{suffix.lower()}"
        final = self.folder / name
        if not final.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, final)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        return name, final

    def path(self, name: str | None) -> Path | None:
        """The kept photo called ``name``, or None if there is none."""
        if not name or Path(name).name != name:
            return None
        p = self.folder / name
        return p if p.is_file() else None
