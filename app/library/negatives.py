"""Corrections ("this face is not X"): embeddings known not to be a person, kept beside the gallery.

A match to person X is refused when the face is at least as close (less ``MARGIN``) to one of X's negatives as
to X: the very track that was corrected, seen again, is not named X again, while X's own faces, much nearer to
X than to a stranger's negative, still are. Kept in one small ``.npz`` per collection (written atomically,
fsynced), so a correction survives restarts; removing or merging a person carries their negatives along.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

MARGIN = 0.05
MAX_PER_PERSON = 256  # oldest go first: a person corrected over and over does not grow without bound


class Negatives:
    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path is not None else None
        self.by_person: dict[str, np.ndarray] = {}
        if self.path is not None and self.path.is_file():
            with np.load(self.path, allow_pickle=False) as data:
                self.by_person = {k: np.asarray(data[k], np.float32) for k in data.files}

    def add(self, person_id: str, embeddings: np.ndarray) -> None:
        rows = np.asarray(embeddings, np.float32).reshape(-1, embeddings.shape[-1])
        rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        old = self.by_person.get(person_id)
        joined = rows if old is None else np.concatenate([old, rows])
        self.by_person[person_id] = joined[-MAX_PER_PERSON:]
        self._save()

    def refused(self, person_id: str, embedding: np.ndarray, score: float) -> bool:
        """Whether a match of ``embedding`` to ``person_id`` at ``score`` is one a correction ruled out."""
        neg = self.by_person.get(person_id)
        if neg is None or not len(neg):
            return False
        e = np.asarray(embedding, np.float32)
        e = e / max(float(np.linalg.norm(e)), 1e-12)
        return float((neg @ e).max()) + MARGIN >= score

    def drop(self, person_id: str) -> None:
        if self.by_person.pop(person_id, None) is not None:
            self._save()

    def move(self, person_id: str, into_id: str) -> None:
        moved = self.by_person.pop(person_id, None)
        if moved is not None:
            self.by_person[into_id] = np.concatenate([self.by_person.get(into_id, moved[:0]), moved])
            self._save()

    def count(self, person_id: str | None = None) -> int:
        if person_id is not None:
            return len(self.by_person.get(person_id, ()))
        return sum(len(v) for v in self.by_person.values())

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **self.by_person)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
