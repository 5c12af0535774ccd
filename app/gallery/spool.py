"""Enrolments waiting for an unreachable Qdrant server, one file each, written atomically.

A file is ``<uuid>.npz`` (the vectors, plus a JSON header: name, person id, content keys, sources)
written under a temporary name, fsynced and renamed, so a crash leaves either the whole entry or
nothing. Point ids are derived from content, so replaying an entry twice (two pipelines flushing
one spool) writes the same points once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.gallery.records import Prepared

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpoolEntry:
    path: Path
    name: str
    person_id: str | None
    prepared: Prepared


class Spool:
    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def put(self, name: str, person_id: str | None, prepared: Prepared) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        header = json.dumps({"name": name, "person_id": person_id, "keys": prepared.keys,
                             "sources": prepared.sources})
        final = self.folder / f"{uuid.uuid4().hex}.npz"
        tmp = self.folder / f".tmp-{final.name}"
        with tmp.open("wb") as f:
            np.savez(f, vectors=prepared.vectors, header=np.array(header))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return final

    def entries(self) -> list[SpoolEntry]:
        """Complete entries, oldest first; unreadable ones are reported and left for a person to look at."""
        if not self.folder.is_dir():
            return []
        files = sorted((p for p in self.folder.glob("*.npz") if not p.name.startswith(".tmp-")),
                       key=lambda p: (p.stat().st_mtime, p.name))
        out = []
        for path in files:
            try:
                with np.load(path, allow_pickle=False) as data:
                    header = json.loads(str(data["header"]))
                    vectors = np.asarray(data["vectors"], np.float32)
                out.append(SpoolEntry(path, header["name"], header["person_id"],
                                      Prepared(vectors, list(header["keys"]), list(header["sources"]))))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("gallery spool: skipping unreadable %s (%s)", path, exc)
        return out

    def __len__(self) -> int:
        return len(self.entries())

    def drain(self, write: Callable[[SpoolEntry], object]) -> int:
        """Call ``write`` for each entry, deleting it once written; stops at the first failure (raised)."""
        done = 0
        for entry in self.entries():
            write(entry)
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()
            done += 1
        return done
