"""What the gallery stores and hands back: its errors, the records (Match, Person, Embedder, AddResult), point ids
derived from content, and the embeddings prepared for a write. Shared by both Qdrant adapters, the sightings and the
face library; the people rules themselves live in ``app.gallery.base``."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.errors import FacestreamError
from engines.fetch import sha256_file

DIM = 512
PAYLOAD_FIELDS = ["person_id", "name"]  # what searches and listings read back
INDEXED_FIELDS = ("person_id", "name_key")  # keyword payload indexes: every filter is on one of these
META_KEY, META_VALUE = "kind", "meta"  # the embedder record's marker; filtered out of everything else
_ID_NAMESPACE = uuid.UUID("6f1c2a52-35b8-4d8e-9a53-0c9b3e5f7d21")
META_ID = str(uuid.uuid5(_ID_NAMESPACE, "facestream/embedder"))


class GalleryError(FacestreamError):
    """A gallery problem the user can fix (wrong vector size, ambiguous name, …)."""


class GalleryBusy(GalleryError):
    """Another process holds the embedded gallery's folder."""


class GalleryUnavailable(GalleryError):
    """The Qdrant server cannot be reached right now (network, server down, timeout)."""

    exit_code = 69  # EX_UNAVAILABLE: a supervisor can tell "try again later" from a configuration error


class UnknownPerson(GalleryError):
    """No person by that name (or id); the message lists the closest ones."""


class EmbedderMismatch(GalleryError):
    """The gallery was filled by another embedding model than the configured one."""


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
class Embedder:
    """The model that makes a gallery's vectors: its name and the sha256 of its file."""

    model: str
    sha256: str

    def __str__(self) -> str:
        return f"{self.model} (sha256 {self.sha256[:12]})"


@dataclass(frozen=True)
class AddResult:
    """What one ``add`` did: ``ids`` of every embedding given, ``written`` of them new points, ``already`` enrolled
    for this person, ``taken``: (source, name) of photos already enrolled as someone else (left as they are).

    ``spooled`` counts embeddings kept in the local spool because the server was unreachable
    (their ``person_id`` may be empty until the spool is flushed).
    """

    person_id: str
    name: str
    ids: tuple[str, ...] = ()
    written: int = 0
    spooled: int = 0
    already: int = 0
    taken: tuple[tuple[str, str], ...] = ()


@dataclass
class Prepared:
    """Embeddings ready to write: validated vectors, one content key and one source per row."""

    vectors: np.ndarray
    keys: list[str]
    sources: list[str] = field(default_factory=list)
    filenames: list[str] = field(default_factory=list)  # the photo's name as the user gave it (uploads), or empty


def slug(name: str) -> str:
    """Readable, stable person id from a name: ``"Ada Lovelace"`` → ``"ada-lovelace"``."""
    text = unicodedata.normalize("NFKC", name).casefold()
    text = re.sub(r"[^\w]+", "-", text).strip("-_")
    return text or uuid.uuid5(_ID_NAMESPACE, name).hex[:12]


def point_id(key: str) -> str:
    """A point's id from its content key alone: the same photo is one point, whoever it is enrolled as."""
    return str(uuid.uuid5(_ID_NAMESPACE, key))


def legacy_point_id(person_id: str, key: str) -> str:
    """The id galleries written before content-addressed ids gave the same point."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{person_id}/{key}"))


def file_digest(path: str | Path) -> str | None:
    """sha256 (hex) of a readable file's bytes, else None."""
    p = Path(path)
    return sha256_file(p) if p.is_file() else None


def photo_key(path: str | Path) -> str | None:
    digest = file_digest(path)
    return None if digest is None else "file:" + digest


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


def prepare(embeddings, dim: int, source: Sequence[str] | None = None,
            filenames: Sequence[str] | None = None) -> Prepared:
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
        key = (photo_key(src) if src else None) or "emb:" + row_key
        n = seen_keys.get(key, 0)
        seen_keys[key] = n + 1
        keys.append(key if n == 0 else f"{key}#{n}")
        rows.append(i)
    names = [str(f) for f in filenames] if filenames is not None else []
    if names and len(names) != len(x):
        raise ValueError(f"{len(names)} filenames for {len(x)} embeddings")
    return Prepared(x[rows], keys, [sources[i] for i in rows], [names[i] for i in rows] if names else [])
