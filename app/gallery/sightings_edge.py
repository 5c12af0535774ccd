"""Sightings in an embedded qdrant-edge shard, ``QDRANT_PATH/<collection>_sightings``, shared by taking turns.

The gallery's folder has one owner for the whole run, but sightings must be searchable while a pipeline writes them
(``facestream sightings`` beside ``facestream run``). So this shard is never held open: each operation takes the
folder's ``flock`` (waiting up to ``wait_s`` for the other process's turn), loads the shard, works, flushes (after a
write), closes and lets go. ``hold()`` keeps one turn across several operations (an erase, the writer's queue).
Measured on this (loaded) 2-core box: a turn costs about 40 ms with 2,000 sightings; with 10,000, load 0.25 s,
search 0.01-0.04 s, close 0.23 s and a flush after a write 0.5 s more, so a reader waits up to about a second for
the writer's turn. The shard is never optimised here: qdrant-edge holds the GIL for all of ``optimize()`` (30 s at
10,000 points), which would stall the identify stage. qdrant-edge must never see two loads of one folder at once
(a second load damages the open shard's payload index), which the lock rules out across processes and threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from app.gallery.base import batched
from app.gallery.records import DIM, GalleryBusy, GalleryError
from app.gallery.sightings import INDEXED_FLOATS, INDEXED_INTS, INDEXED_KEYWORDS, SightingStore, Where

_PAGE = 1000
_POLL_S = 0.005  # between tries for the folder's lock
_COURTESY_S = 3 * _POLL_S  # pause before taking the lock again right after letting go of it
_ALL = 1_000_000  # "no limit" for a search: more sightings than one machine keeps


def _filter(where: Where) -> qe.Filter | None:
    must: list = []
    if where.person_id is not None:
        must.append(qe.FieldCondition("person_id", match=qe.MatchValue(where.person_id)))
    if where.name is not None:
        from app.gallery.base import name_key

        must.append(qe.FieldCondition("name_key", match=qe.MatchValue(name_key(where.name))))
    if where.unknown_only:
        must.append(qe.FieldCondition("person_id", match=qe.MatchValue("")))
    if where.stream is not None:
        must.append(qe.FieldCondition("stream", match=qe.MatchValue(int(where.stream))))
    if where.since is not None or where.before is not None:
        must.append(qe.FieldCondition("last_seen", range=qe.RangeFloat(gte=where.since, lt=where.before)))
    return qe.Filter(must=must) if must else None


class EdgeSightings(SightingStore):
    """Sightings in ``path/collection`` through qdrant-edge, opened for each operation (see module doc)."""

    def __init__(self, path: str | os.PathLike, collection: str, snapshots: str | os.PathLike, dim: int = DIM,
                 wait_s: float = 10.0) -> None:
        super().__init__(snapshots)
        self.dim = dim
        self.folder = Path(path) / collection
        self.where = str(self.folder)
        self.lock_path = Path(path) / f"{collection}.lock"
        self.wait_s = wait_s
        self._config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
        self._mutex = threading.RLock()
        self._shard: qe.EdgeShard | None = None
        self._depth = 0
        self._dirty = False  # written during this turn: flushed before the turn ends
        self._released = 0.0  # when this object last let go of the folder
        self._closed = False

    @contextlib.contextmanager
    def hold(self) -> Iterator[qe.EdgeShard]:
        """The shard, open and ours until the block ends (re-entrant: an inner ``hold`` shares the turn)."""
        if self._closed:
            raise GalleryError(f"the sightings at {self.folder} are closed")
        with self._mutex:
            if self._shard is not None:
                self._depth += 1
                try:
                    yield self._shard
                finally:
                    self._depth -= 1
                return
            fd = self._lock()
            try:
                self._shard = self._load()
                try:
                    yield self._shard
                finally:
                    shard, self._shard = self._shard, None
                    if self._dirty:
                        shard.flush()
                        self._dirty = False
                    shard.close()
            finally:
                os.close(fd)  # drops the flock
                self._released = time.monotonic()

    def _lock(self) -> int:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        # let a process that waited for our last turn have the next one: flock is not fair, and a caller looping
        # over operations would otherwise take every turn while the other side polls
        since = time.monotonic() - self._released
        if since < _COURTESY_S:
            time.sleep(_COURTESY_S - since)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise GalleryBusy(f"the sightings at {self.folder} stayed busy for {self.wait_s:g} s (another "
                                      "process is writing or searching them): try again") from None
                time.sleep(_POLL_S)

    def _load(self) -> qe.EdgeShard:
        try:
            if (self.folder / "edge_config.json").is_file():
                shard = qe.EdgeShard.load(str(self.folder), self._config)
            else:
                self.folder.mkdir(parents=True, exist_ok=True)
                shard = qe.EdgeShard.create(str(self.folder), self._config)
        except Exception as exc:  # the engine raises plain Exception with a message
            raise GalleryError(f"cannot open the sightings at {self.folder}: {exc} (delete that folder to start "
                               "over)") from exc
        present = set(shard.info().payload_schema)
        kinds = [(f, qe.PayloadSchemaType.Keyword) for f in INDEXED_KEYWORDS]
        kinds += [(f, qe.PayloadSchemaType.Float) for f in INDEXED_FLOATS]
        kinds += [(f, qe.PayloadSchemaType.Integer) for f in INDEXED_INTS]
        for name, kind in kinds:
            if name not in present:
                shard.update(qe.UpdateOperation.create_field_index(name, kind))
        return shard

    # -- primitives ---------------------------------------------------------------------------
    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None:
        with self.hold() as shard:
            self._dirty = True
            for part in batched(ids, _PAGE):
                points = [qe.Point(i, v, p) for i, v, p in zip(ids[part], vectors[part], payloads[part])]
                shard.update(qe.UpdateOperation.upsert_points(points))

    def _retrieve(self, ids: list[str]) -> dict[str, dict]:
        with self.hold() as shard:
            return {str(r.id): r.payload or {} for r in shard.retrieve(list(ids), with_payload=True,
                                                                       with_vector=False)}

    def _query(self, vector: np.ndarray, where: Where, limit: int, threshold: float
               ) -> list[tuple[str, float, dict]]:
        request = qe.QueryRequest(limit=min(limit, _ALL), query=qe.Query.Nearest(vector), with_payload=True,
                                  filter=_filter(where), score_threshold=threshold)
        with self.hold() as shard:
            return [(str(p.id), float(p.score), p.payload or {}) for p in shard.query(request)]

    def _scroll(self, where: Where, vectors: bool = False) -> list[tuple[str, dict, np.ndarray | None]]:
        out: list[tuple[str, dict, np.ndarray | None]] = []
        offset = None
        with self.hold() as shard:
            while True:
                records, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=_PAGE, filter=_filter(where),
                                                                with_payload=True, with_vector=vectors))
                for r in records:
                    out.append((str(r.id), r.payload or {}, _vector(r.vector) if vectors else None))
                if offset is None or not records:
                    return out

    def _delete(self, ids: list[str]) -> None:
        with self.hold() as shard:
            self._dirty = True
            shard.update(qe.UpdateOperation.delete_points(list(ids)))

    def _count(self, where: Where) -> int:
        with self.hold() as shard:
            return int(shard.count(qe.CountRequest(exact=True, filter=_filter(where))))

    def close(self) -> None:
        self._closed = True  # nothing is held between operations


def _vector(v) -> np.ndarray | None:
    """The default vector of a record, however the engine hands it back (a list, or a dict by vector name)."""
    if isinstance(v, dict):
        v = v.get("", next(iter(v.values()), None))
    return None if v is None else np.asarray(v, np.float32)
