"""The gallery interface the project owns, and the rules both Qdrant adapters share.

One point per enrolled embedding; the payload holds ``person_id``, ``name`` (as typed), ``name_key`` (case-folded,
indexed: names are looked up regardless of case and two people never share one), ``source`` and ``created``.
Point ids are uuid5 of the person id and a content key (the photo's bytes when the source is a file,
else the embedding's bytes), so enrolling the same photo again rewrites nothing and new photos add points.
The adapters implement a handful of storage primitives; everything about people lives here once.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.errors import FacestreamError

DIM = 512
PAYLOAD_FIELDS = ["person_id", "name"]  # what searches and listings read back
INDEXED_FIELDS = ("person_id", "name_key")  # keyword payload indexes: every filter is on one of these
_ID_NAMESPACE = uuid.UUID("6f1c2a52-35b8-4d8e-9a53-0c9b3e5f7d21")


class GalleryError(FacestreamError):
    """A gallery problem the user can fix (wrong vector size, ambiguous name, …)."""


class GalleryBusy(GalleryError):
    """Another process holds the embedded gallery's folder."""


class GalleryUnavailable(GalleryError):
    """The Qdrant server cannot be reached right now (network, server down, timeout)."""


@dataclass(frozen=True)
class Match:
    person_id: str
    name: str
    score: float  # cosine similarity in [-1, 1]


@dataclass(frozen=True)
class Person:
    person_id: str
    name: str
    embeddings: int


@dataclass(frozen=True)
class AddResult:
    """What one ``add`` did: ``ids`` of every embedding given, ``written`` of them new points.

    ``spooled`` counts embeddings kept in the local spool because the server was unreachable
    (their ``person_id`` may be empty until the spool is flushed).
    """

    person_id: str
    name: str
    ids: tuple[str, ...] = ()
    written: int = 0
    spooled: int = 0


@dataclass
class Prepared:
    """Embeddings ready to write: validated vectors, one content key and one source per row."""

    vectors: np.ndarray
    keys: list[str]
    sources: list[str] = field(default_factory=list)


def slug(name: str) -> str:
    """Readable, stable person id from a name: ``"Ada Lovelace"`` → ``"ada-lovelace"``."""
    text = unicodedata.normalize("NFKC", name).casefold()
    text = re.sub(r"[^\w]+", "-", text).strip("-_")
    return text or uuid.uuid5(_ID_NAMESPACE, name).hex[:12]


def point_id(person_id: str, key: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{person_id}/{key}"))


def _file_digest(path: str) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "file:" + h.hexdigest()


def as_embeddings(embeddings, dim: int) -> np.ndarray:
    """(N, dim) finite float32 rows with non-zero norm; one vector is accepted as N=1."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"embeddings must be (N, {dim}), got {np.shape(embeddings)}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    if len(x) and (np.linalg.norm(x, axis=1) == 0).any():
        raise ValueError("an embedding is all zeros")
    return np.ascontiguousarray(x)


def prepare(embeddings, dim: int, source: Sequence[str] | None = None) -> Prepared:
    """Validate and key each embedding; identical rows given twice in one call are kept once.

    The key is the source photo's sha256 when the source is a readable file (so the same photo
    enrolled again, even embedded by another backend, maps to the same point), else the sha256 of
    the float32 embedding. A photo giving several embeddings gets ``#1``, ``#2``… on later ones.
    """
    x = as_embeddings(embeddings, dim)
    if source is not None and len(source) != len(x):
        raise ValueError(f"{len(source)} sources for {len(x)} embeddings")
    sources = [str(s) for s in source] if source is not None else [""] * len(x)
    rows, keys, seen_rows, seen_keys = [], [], set(), {}
    for i, (row, src) in enumerate(zip(x, sources)):
        row_key = hashlib.sha256(row.tobytes()).hexdigest()
        if row_key in seen_rows:
            continue
        seen_rows.add(row_key)
        key = (_file_digest(src) if src else None) or "emb:" + row_key
        n = seen_keys.get(key, 0)
        seen_keys[key] = n + 1
        keys.append(key if n == 0 else f"{key}#{n}")
        rows.append(i)
    return Prepared(x[rows], keys, [sources[i] for i in rows])


class Gallery(ABC):
    """Enrolled people as Qdrant points; the same behaviour whichever engine stores them."""

    dim: int = DIM
    where: str = ""  # human-readable location for messages (never holds a secret)

    # -- storage primitives, one set per adapter ---------------------------------------------
    @abstractmethod
    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None: ...

    @abstractmethod
    def _existing(self, ids: list[str]) -> set[str]: ...

    @abstractmethod
    def _query(self, vectors: np.ndarray, limit: int, threshold: float) -> list[list[tuple[float, dict]]]:
        """One engine call for the whole batch: per row, (score, payload) best first, >= threshold."""

    @abstractmethod
    def _scroll(self, person_id: str | None = None, name_key: str | None = None,
                limit: int | None = None) -> Iterator[dict]:
        """Payloads (person_id, name) of the points matching the optional filters."""

    @abstractmethod
    def _count(self, person_id: str | None = None) -> int: ...

    @abstractmethod
    def _set_payload(self, person_id: str, payload: dict) -> None: ...

    @abstractmethod
    def _delete_person(self, person_id: str) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- the interface ------------------------------------------------------------------------
    def add(self, name: str, embeddings: np.ndarray, person_id: str | None = None,
            source: Sequence[str] | None = None) -> AddResult:
        """Enrol embeddings (N, dim) of one person; existing points (same photo/embedding) are kept as they are.

        Without ``person_id``, the person already called ``name`` (in any case; the stored spelling stays)
        gets the new embeddings, or a new person id (a slug of the name) is made. With a ``person_id``
        whose stored name differs, the person is renamed to ``name`` so that one person has one name.
        """
        name = _clean_name(name)
        return self._write(name, person_id, prepare(embeddings, self.dim, source))

    def _write(self, name: str, person_id: str | None, prep: Prepared) -> AddResult:
        holder = self.person_id_of_name(name)
        if person_id is not None and holder not in (None, person_id):
            raise _name_taken(name, holder)
        person_id = person_id or holder or self._new_person_id(name)
        current = next(self._scroll(person_id=person_id, limit=1), None)
        if current is not None:
            stored = str(current.get("name", ""))
            if name_key(stored) == name_key(name):
                name = stored  # the same name typed in another case: the stored spelling stays until a rename
            else:
                self._set_payload(person_id, {"name": name, "name_key": name_key(name)})
        ids = [point_id(person_id, k) for k in prep.keys]
        existing = self._existing(ids) if ids else set()
        new = [i for i, pid in enumerate(ids) if pid not in existing]
        if new:
            created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            payloads = [{"person_id": person_id, "name": name, "name_key": name_key(name), "source": prep.sources[i],
                         "created": created} for i in new]
            self._upsert([ids[i] for i in new], prep.vectors[new], payloads)
        return AddResult(person_id=person_id, name=name, ids=tuple(ids), written=len(new))

    def search(self, embeddings: np.ndarray, threshold: float) -> list[Match | None]:
        """Best match per row of (N, dim) in one engine call; None where no point scores >= threshold."""
        x = as_embeddings(embeddings, self.dim) if len(embeddings) else np.zeros((0, self.dim), np.float32)
        if not len(x):
            return []
        out: list[Match | None] = []
        for hits in self._query(x, 1, float(threshold)):
            hit = next(((s, p) for s, p in hits if s >= threshold), None)
            out.append(None if hit is None else _match(*hit))
        return out

    def search_top(self, embeddings: np.ndarray, threshold: float, k: int = 3) -> list[list[Match]]:
        """Up to ``k`` distinct people per row, best first (for voting or showing runners-up)."""
        x = as_embeddings(embeddings, self.dim) if len(embeddings) else np.zeros((0, self.dim), np.float32)
        if not len(x):
            return []
        out = []
        for hits in self._query(x, max(1, k) * 4, float(threshold)):
            best: dict[str, Match] = {}
            for s, p in hits:
                if s >= threshold and p.get("person_id") not in best:
                    best[p.get("person_id")] = _match(s, p)
            out.append(list(best.values())[:k])
        return out

    def people(self) -> list[Person]:
        """Everyone enrolled with their number of embeddings, sorted by name."""
        found: dict[str, list] = {}
        for p in self._scroll():
            entry = found.setdefault(p.get("person_id", ""), [p.get("name", ""), 0])
            entry[1] += 1
        people = (Person(pid, n, c) for pid, (n, c) in found.items())
        return sorted(people, key=lambda p: (p.name.casefold(), p.person_id))

    def person_id_of_name(self, name: str) -> str | None:
        """The person called ``name``, whatever its case, or None."""
        hit = next(self._scroll(name_key=name_key(name), limit=1), None)
        return None if hit is None else hit.get("person_id")

    def resolve(self, person_id_or_name: str) -> str | None:
        """Person id for a person id or a name (any case); None if neither is enrolled."""
        who = person_id_or_name.strip()
        if not who:
            return None
        if self._count(person_id=who):
            return who
        return self.person_id_of_name(who)

    def rename(self, person_id_or_name: str, new_name: str) -> int:
        """Give a person a new name; returns the number of embeddings renamed (0: no such person)."""
        new_name = _clean_name(new_name)
        pid = self.resolve(person_id_or_name)
        if pid is None:
            return 0
        holder = self.person_id_of_name(new_name)
        if holder not in (None, pid):
            raise _name_taken(new_name, holder)
        n = self._count(person_id=pid)
        self._set_payload(pid, {"name": new_name, "name_key": name_key(new_name)})
        return n

    def remove(self, person_id_or_name: str) -> int:
        """Delete a person and all their embeddings; returns how many points went (0: no such person)."""
        pid = self.resolve(person_id_or_name)
        if pid is None:
            return 0
        n = self._count(person_id=pid)
        self._delete_person(pid)
        return n

    def count(self) -> int:
        """Number of points (embeddings) in the gallery."""
        return self._count()

    def _new_person_id(self, name: str) -> str:
        base = slug(name)
        pid, n = base, 1
        while self._count(person_id=pid):  # the slug is taken by someone since renamed
            n += 1
            pid = f"{base}-{n}"
        return pid

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def name_key(name: str) -> str:
    """What makes two names the same name: Unicode-normalised, case-folded, inner spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def _name_taken(name: str, holder: str) -> GalleryError:
    return GalleryError(f"{name!r} is already the name of person {holder}: remove or rename that person first")


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise GalleryError("a person needs a non-empty name")
    return name


def _match(score: float, payload: dict) -> Match:
    return Match(person_id=str(payload.get("person_id", "")), name=str(payload.get("name", "")),
                 score=float(min(1.0, max(-1.0, score))))


def batched(items: Sequence, size: int) -> Iterable[slice]:
    for start in range(0, len(items), size):
        yield slice(start, min(len(items), start + size))
