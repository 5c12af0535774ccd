"""Embedded gallery: the real Qdrant engine in-process (qdrant-edge), one shard folder under QDRANT_PATH.

qdrant-edge guards its WAL with a lock, but a second ``load`` gets far enough to damage the open
shard's payload index before failing, so the folder is guarded by our own ``flock`` on
``QDRANT_PATH/<collection>.lock`` taken before the engine is touched.

qdrant-edge 0.9.0 holds the GIL for the whole of ``optimize()`` (seconds at 10k points, minutes
at 100k on two cores), so a "background" optimise stalls every other thread of the process:
it is started after bulk enrolment (``optimize_after`` new points), never per live frame.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from app.gallery.base import Gallery, batched
from app.gallery.photos import PhotoStore
from app.gallery.records import (
    DIM,
    INDEXED_FIELDS,
    META_KEY,
    META_VALUE,
    PAYLOAD_FIELDS,
    Embedder,
    GalleryBusy,
    GalleryError,
)

log = logging.getLogger(__name__)

_UPSERT_BATCH = 1000
_SCROLL_PAGE = 1000


class FolderLock:
    """Exclusive ``flock`` on a file holding the owner's pid; released when the process dies."""

    def __init__(self, lock_path: Path, what: Path) -> None:
        self.path = lock_path
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            self._fd = None
            raise GalleryBusy(f"the gallery at {what} is held by a running pipeline (pid {holder}); "
                              f"stop it or use QDRANT_URL") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _stored_vector_params(folder: Path) -> tuple[int, str] | None:
    """(size, distance) of the default vector from the shard's ``edge_config.json``, if readable."""
    try:
        params = json.loads((folder / "edge_config.json").read_text())["vectors"][""]
        return int(params["size"]), str(params["distance"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _mismatch(folder: Path, size: object, dim: int, distance: str = "Cosine") -> GalleryError:
    return GalleryError(f"the gallery at {folder} holds {size}-d {distance} vectors but the embedder makes "
                        f"{dim}-d Cosine ones: use another QDRANT_COLLECTION or QDRANT_PATH, or delete {folder}")


def _person(person_id: str | None = None, name_key: str | None = None) -> qe.Filter:
    """Points of a person (or all people's points), never the embedder record."""
    pairs = (("person_id", person_id), ("name_key", name_key))
    must = [qe.FieldCondition(k, match=qe.MatchValue(v)) for k, v in pairs if v is not None]
    return qe.Filter(must=must or None, must_not=[qe.FieldCondition(META_KEY, match=qe.MatchValue(META_VALUE))])


class EdgeGallery(Gallery):
    """The gallery in ``path/collection`` through qdrant-edge; one process at a time."""

    def __init__(self, path: str | os.PathLike, collection: str = "faces", dim: int = DIM,
                 optimize_after: int = 2000, embedder: Embedder | None = None,
                 photos_dir: str | os.PathLike | None = None) -> None:
        self.dim = dim
        self.embedder = embedder
        self.photos = PhotoStore(photos_dir) if photos_dir is not None else None
        self.folder = Path(path) / collection
        self.where = str(self.folder)
        self.optimize_after = optimize_after
        self._pending = 0
        self._optimizer: threading.Thread | None = None
        self._shard: qe.EdgeShard | None = None
        self._lock = FolderLock(Path(path) / f"{collection}.lock", self.folder)
        try:
            self._shard = self._open()
            self._ensure_indexes()
            self._bind_embedder()
        except BaseException:
            if self._shard is not None:
                self._shard.close()
                self._shard = None
            self._lock.release()
            raise

    def _open(self) -> qe.EdgeShard:
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=self.dim, distance=qe.Distance.Cosine))
        stored = _stored_vector_params(self.folder)
        if stored is not None and stored != (self.dim, "Cosine"):
            raise _mismatch(self.folder, stored[0], self.dim, stored[1])
        has_data = self.folder.is_dir() and any((self.folder / "segments").glob("*"))
        try:
            if stored is not None or has_data:
                return qe.EdgeShard.load(str(self.folder), config)
            self.folder.mkdir(parents=True, exist_ok=True)
            log.info("gallery: new embedded shard at %s (%d-d, cosine)", self.folder, self.dim)
            return qe.EdgeShard.create(str(self.folder), config)
        except Exception as exc:  # the engine raises plain Exception with a message
            if "ncompatible" in str(exc):
                raise _mismatch(self.folder, "other", self.dim) from exc
            raise GalleryError(f"cannot open the gallery at {self.folder}: {exc}") from exc

    def _ensure_indexes(self) -> None:
        present = set(self.shard.info().payload_schema)
        for name in INDEXED_FIELDS:
            if name not in present:
                self.shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))

    @property
    def shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise GalleryError(f"the gallery at {self.folder} is closed")
        return self._shard

    # -- primitives ---------------------------------------------------------------------------
    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None:
        for part in batched(ids, _UPSERT_BATCH):
            points = [qe.Point(i, v, p) for i, v, p in zip(ids[part], vectors[part], payloads[part])]
            self.shard.update(qe.UpdateOperation.upsert_points(points))
        self._pending += len(ids)
        if self.optimize_after and self._pending >= self.optimize_after:
            self.optimize(wait=False)

    def _retrieve(self, ids: list[str]) -> dict[str, dict]:
        return {str(r.id): r.payload or {} for r in self.shard.retrieve(list(ids), with_payload=True,
                                                                        with_vector=False)}

    def _query(self, vectors: np.ndarray, limit: int, threshold: float) -> list[list[tuple[float, dict]]]:
        requests = [qe.QueryRequest(limit=limit, query=qe.Query.Nearest(v), with_payload=PAYLOAD_FIELDS,
                                    filter=_person(), score_threshold=threshold) for v in vectors]
        results = self.shard.query_batch(qe.QueryBatchRequest(requests))
        return [[(float(p.score), p.payload or {}) for p in hits] for hits in results]

    def _scroll(self, person_id: str | None = None, name_key: str | None = None,
                limit: int | None = None, full: bool = False) -> Iterator[tuple[str, dict]]:
        offset, given = None, 0
        while True:
            page = _SCROLL_PAGE if limit is None else min(_SCROLL_PAGE, limit - given)
            records, offset = self.shard.scroll(qe.ScrollRequest(offset=offset, limit=page,
                                                                 filter=_person(person_id, name_key),
                                                                 with_payload=True if full else PAYLOAD_FIELDS,
                                                                 with_vector=False))
            for r in records:
                yield str(r.id), r.payload or {}
            given += len(records)
            if offset is None or not records or (limit is not None and given >= limit):
                return

    def _count(self, person_id: str | None = None) -> int:
        return int(self.shard.count(qe.CountRequest(exact=True, filter=_person(person_id))))

    def _set_payload(self, person_id: str, payload: dict) -> None:
        self.shard.update(qe.UpdateOperation.set_payload_by_filter(_person(person_id), payload))

    def _delete_person(self, person_id: str) -> None:
        self.shard.update(qe.UpdateOperation.delete_points_by_filter(_person(person_id)))

    def _delete_ids(self, ids: list[str]) -> None:
        self.shard.update(qe.UpdateOperation.delete_points(list(ids)))

    def flush(self) -> None:
        """Sync what was written to disk, so an acknowledged enrolment survives a kill -9."""
        self.shard.flush()

    # -- engine upkeep ------------------------------------------------------------------------
    def optimize(self, wait: bool = True) -> threading.Thread | None:
        """Build the HNSW index / merge segments; ``wait=False`` runs it in a thread (see module doc)."""
        self._pending = 0
        if self._optimizer is not None and self._optimizer.is_alive():
            return self._optimizer
        shard = self.shard

        def run() -> None:
            try:
                shard.optimize()
            except Exception:  # an optimiser failure leaves the data searchable, just slower
                log.exception("gallery: optimising %s failed", self.folder)

        if wait:
            run()
            return None
        self._optimizer = threading.Thread(target=run, name="gallery-optimize", daemon=True)
        self._optimizer.start()
        return self._optimizer

    def close(self) -> None:
        """Wait for a running optimise, flush, close the shard and release the folder."""
        if self._shard is None:
            return
        try:
            if self._optimizer is not None:
                self._optimizer.join()
            self._shard.flush()
            self._shard.close()
        finally:
            self._shard = None
            self._lock.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
