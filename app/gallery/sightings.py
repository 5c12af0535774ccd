"""Sightings: each finished track's best face, kept in a second Qdrant collection so past faces can be searched.

One point per sighting: the track's best embedding (the one the gallery scored highest), with stream, track, first
and last seen (capture wall time and frame index), the person it was named as (or unknown, with the nearest person
and similarity) and the path of its snapshot, a JPEG file under ``QDRANT_PATH/snapshots/<collection>/`` named by the
point id. Both engines store it: embedded (``QDRANT_PATH/<collection>_sightings``, its own folder and lock) or a
server (collection ``<collection>_sightings``). The store owns its snapshot files: deleting a sighting deletes its
file, and a snapshot is written (atomically) before the point that names it, so no point names a missing file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from app.errors import FacestreamError
from app.gallery.base import name_key
from app.gallery.records import DIM, as_embeddings

log = logging.getLogger(__name__)

SUFFIX = "_sightings"
INDEXED_KEYWORDS = ("person_id", "name_key")
INDEXED_FLOATS = ("first_seen", "last_seen")
INDEXED_INTS = ("stream",)
_ID_NAMESPACE = uuid.UUID("0b7d3e2c-8f51-4a7e-9d0c-5a4f3b2e1c69")


@dataclass(frozen=True)
class Sighting:
    """One finished track. ``person_id`` is "" for an unknown face; ``name`` is then ``unknown``."""

    stream: int
    track_id: int
    first_seen: float  # capture time of its first frame, time.time()
    last_seen: float
    embedding: np.ndarray = field(repr=False)
    person_id: str = ""
    name: str = "unknown"
    nearest: str = ""  # an unknown face's nearest enrolled person
    similarity: float = 0.0  # of the best embedding to the person (or to the nearest one)
    first_frame: int = -1
    last_frame: int = -1
    source: str = ""  # the stream's source as shown to users (credentials already masked)
    run_id: str = ""
    snapshot: str = ""  # path of its JPEG, set by the store

    @property
    def known(self) -> bool:
        return bool(self.person_id)

    def point_id(self) -> str:
        """Stable for one track of one run: writing the same sighting twice keeps one point."""
        key = f"{self.run_id}/{self.stream}/{self.track_id}/{self.first_seen:.6f}"
        return str(uuid.uuid5(_ID_NAMESPACE, key))

    def payload(self) -> dict:
        return {"stream": int(self.stream), "track_id": int(self.track_id), "first_seen": float(self.first_seen),
                "last_seen": float(self.last_seen), "person_id": self.person_id, "name": self.name,
                "name_key": name_key(self.name) if self.person_id else "", "nearest": self.nearest,
                "similarity": float(self.similarity), "first_frame": int(self.first_frame),
                "last_frame": int(self.last_frame), "source": self.source, "run_id": self.run_id,
                "snapshot": self.snapshot}

    @classmethod
    def from_payload(cls, payload: dict, embedding: np.ndarray | None = None) -> Sighting:
        known = {f: payload[f] for f in ("stream", "track_id", "first_seen", "last_seen", "person_id", "name",
                                         "nearest", "similarity", "first_frame", "last_frame", "source", "run_id",
                                         "snapshot") if f in payload}
        empty = np.zeros(0, np.float32)
        return cls(embedding=empty if embedding is None else embedding, **known)


@dataclass(frozen=True)
class Hit:
    """A sighting found: its point id, and the similarity of the face searched for (None when listed, not searched)."""

    id: str
    sighting: Sighting
    score: float | None = None


@dataclass(frozen=True)
class Where:
    """Which sightings: every condition given must hold."""

    person_id: str | None = None
    name: str | None = None  # display name, any case (as stored when the sighting was written)
    stream: int | None = None
    since: float | None = None  # last seen at or after (time.time())
    before: float | None = None  # last seen before
    unknown_only: bool = False


class SightingStore(ABC):
    """Sightings in one Qdrant collection and their snapshot files; the same behaviour on either engine."""

    dim: int = DIM
    where: str = ""

    def __init__(self, snapshots: str | os.PathLike) -> None:
        self.snapshots = Path(snapshots)

    # -- storage primitives, one set per adapter --------------------------------------------------
    @abstractmethod
    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None: ...

    @abstractmethod
    def _retrieve(self, ids: list[str]) -> dict[str, dict]: ...

    @abstractmethod
    def _query(self, vector: np.ndarray, where: Where, limit: int, threshold: float
               ) -> list[tuple[str, float, dict]]: ...

    @abstractmethod
    def _scroll(self, where: Where, vectors: bool = False) -> list[tuple[str, dict, np.ndarray | None]]: ...

    @abstractmethod
    def _delete(self, ids: list[str]) -> None: ...

    @abstractmethod
    def _count(self, where: Where) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- the interface -----------------------------------------------------------------------
    def add(self, sighting: Sighting, snapshot_jpeg: bytes | None = None) -> str:
        """Store one sighting (and its snapshot, written first); returns its point id."""
        vector = as_embeddings(sighting.embedding, self.dim)
        pid = sighting.point_id()
        path = self._write_snapshot(pid, snapshot_jpeg) if snapshot_jpeg else ""
        try:
            self._upsert([pid], vector, [replace(sighting, snapshot=path).payload()])
        except BaseException:
            if path:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        return pid

    def search(self, embedding: np.ndarray, where: Where = Where(), limit: int = 20,
               threshold: float = -1.0) -> list[Hit]:
        """Sightings whose face is nearest ``embedding``, best first, scoring at least ``threshold``."""
        vector = as_embeddings(embedding, self.dim)[0]
        return [Hit(i, Sighting.from_payload(p), s) for i, s, p in self._query(vector, where, limit, threshold)]

    def list(self, where: Where = Where(), limit: int | None = None) -> list[Hit]:
        """Sightings matching ``where``, most recent first."""
        hits = [Hit(i, Sighting.from_payload(p)) for i, p, _ in self._scroll(where)]
        hits.sort(key=lambda h: h.sighting.last_seen, reverse=True)
        return hits if limit is None else hits[:limit]

    def get(self, sighting_id: str) -> Sighting | None:
        """One sighting by its point id (the web app's snapshot route); None when there is none."""
        payload = self._retrieve([sighting_id]).get(sighting_id)
        return None if payload is None else Sighting.from_payload(payload)

    def vectors(self, where: Where) -> list[tuple[str, np.ndarray]]:
        """(id, embedding) of the sightings matching ``where``."""
        return [(i, np.asarray(v, np.float32)) for i, _, v in self._scroll(where, vectors=True) if v is not None]

    def delete(self, ids: list[str]) -> int:
        """Delete these sightings and their snapshot files; returns how many snapshot files went."""
        if not ids:
            return 0
        found = self._retrieve(list(ids))
        self._delete(list(ids))
        return sum(self._drop_snapshot(str(p.get("snapshot") or "")) for p in found.values())

    def prune(self, days: float, now: float | None = None) -> int:
        """Delete sightings last seen more than ``days`` ago (0: keep forever); returns how many went."""
        if days <= 0:
            return 0
        cutoff = (time.time() if now is None else now) - days * 86400.0
        old = [i for i, _, _ in self._scroll(Where(before=cutoff))]
        self.delete(old)
        if old:
            log.info("sightings: pruned %d older than %g day(s) from %s", len(old), days, self.where)
        return len(old)

    def count(self, where: Where = Where()) -> int:
        return self._count(where)

    # -- snapshot files ------------------------------------------------------------------------
    def _write_snapshot(self, pid: str, jpeg: bytes) -> str:
        self.snapshots.mkdir(parents=True, exist_ok=True)
        final = self.snapshots / f"{pid}.jpg"
        fd, tmp = tempfile.mkstemp(prefix=f".{pid}.", suffix=".part", dir=self.snapshots)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(jpeg)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)  # whole or absent, never half a JPEG
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return str(final.resolve())

    def _drop_snapshot(self, path: str) -> int:
        """Delete a snapshot file this store wrote (never a path outside its folder); 1 if one went."""
        if not path:
            return 0
        p = Path(path)
        if p.parent.resolve() != self.snapshots.resolve():
            log.warning("sightings: snapshot %s is outside %s: left as it is", p, self.snapshots)
            return 0
        try:
            p.unlink()
            return 1
        except FileNotFoundError:
            return 0

    def __enter__(self) -> SightingStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def snapshots_dir(path: str | os.PathLike, collection: str) -> Path:
    """Where sighting snapshots are kept: beside the gallery, one folder per gallery collection."""
    return Path(path) / "snapshots" / collection


def open_sightings(url: str | None, path: str | os.PathLike, collection: str, api_key: str | None = None,
                   prefer_grpc: bool = False, dim: int = DIM, wait_s: float = 10.0) -> SightingStore:
    """The sightings of gallery ``collection``: embedded under ``path``, or a second collection on the server."""
    snaps = snapshots_dir(path, collection)
    if url:
        from app.gallery.sightings_server import ServerSightings

        return ServerSightings(collection + SUFFIX, snaps, dim, url=url, api_key=api_key, prefer_grpc=prefer_grpc)
    from app.gallery.sightings_edge import EdgeSightings

    return EdgeSightings(path, collection + SUFFIX, snaps, dim, wait_s=wait_s)


def sightings_from_settings(settings, wait_s: float = 10.0) -> SightingStore:
    return open_sightings(settings.qdrant_url or None, settings.qdrant_path, settings.qdrant_collection,
                          api_key=settings.qdrant_api_key or None, prefer_grpc=settings.qdrant_grpc, wait_s=wait_s)


_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """``30m`` / ``2h`` / ``7d`` ago, or a local date or date-time, as time.time(); None when not given."""
    if not text:
        return None
    now = time.time() if now is None else now
    span = _SPAN.match(text.strip().lower())
    if span:
        return now - float(span.group(1)) * _UNIT_S[span.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise FacestreamError(f"since {text!r} is not a time: use 30m, 2h, 7d or a date such as 2026-12-04 "
                              "(or 2026-12-04T15:00)") from None
