"""Sightings as a second collection (``<collection>_sightings``) on the Qdrant server the gallery uses.

A server serves any number of readers and writers, so unlike the embedded store nothing takes turns here. The same
class drives qdrant-client's local mode (``location=":memory:"`` or ``path=``), which the tests use for a server.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as m

from app.gallery.base import batched, name_key
from app.gallery.records import DIM, GalleryError
from app.gallery.server import ServerGallery, qdrant_client
from app.gallery.sightings import INDEXED_FLOATS, INDEXED_INTS, INDEXED_KEYWORDS, SightingStore, Where

_PAGE = 1000


def _filter(where: Where) -> m.Filter | None:
    must: list = []
    if where.person_id is not None:
        must.append(m.FieldCondition(key="person_id", match=m.MatchValue(value=where.person_id)))
    if where.name is not None:
        must.append(m.FieldCondition(key="name_key", match=m.MatchValue(value=name_key(where.name))))
    if where.unknown_only:
        must.append(m.FieldCondition(key="person_id", match=m.MatchValue(value="")))
    if where.stream is not None:
        must.append(m.FieldCondition(key="stream", match=m.MatchValue(value=int(where.stream))))
    if where.since is not None or where.before is not None:
        must.append(m.FieldCondition(key="last_seen", range=m.Range(gte=where.since, lt=where.before)))
    return m.Filter(must=must) if must else None


class ServerSightings(SightingStore):
    """Sightings in collection ``collection`` of a Qdrant server (or a local-mode client)."""

    def __init__(self, collection: str, snapshots: str | os.PathLike, dim: int = DIM, *, url: str | None = None,
                 api_key: str | None = None, prefer_grpc: bool = False, client: QdrantClient | None = None,
                 location: str | None = None, path: str | os.PathLike | None = None, timeout: int = 10) -> None:
        super().__init__(snapshots)
        self.dim = dim
        self.collection = collection
        self.client, where = qdrant_client(client, url, api_key, prefer_grpc, timeout, path, location)
        self._own = client is None
        self.where = f"collection {collection!r} at {where}"
        self._ready = False

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GalleryError:
            raise
        except Exception as exc:
            error = ServerGallery._translate(self, exc)  # the gallery's one-line errors; it reads only .where
            if error is None:
                raise
            raise error from None

    def _ensure(self) -> None:
        if self._ready:
            return
        if not self._call(self.client.collection_exists, self.collection):
            try:
                self._call(self.client.create_collection, self.collection,
                           vectors_config=m.VectorParams(size=self.dim, distance=m.Distance.COSINE))
            except GalleryError:
                raise
            except Exception:  # another pipeline made it first
                if not self._call(self.client.collection_exists, self.collection):
                    raise
        kinds = [(f, m.PayloadSchemaType.KEYWORD) for f in INDEXED_KEYWORDS]
        kinds += [(f, m.PayloadSchemaType.FLOAT) for f in INDEXED_FLOATS]
        kinds += [(f, m.PayloadSchemaType.INTEGER) for f in INDEXED_INTS]
        with warnings.catch_warnings():  # local mode warns that payload indexes do nothing there
            warnings.simplefilter("ignore", UserWarning)
            for name, kind in kinds:
                self._call(self.client.create_payload_index, self.collection, name, field_schema=kind, wait=True)
        self._ready = True

    # -- primitives ---------------------------------------------------------------------------
    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None:
        self._ensure()
        for part in batched(ids, 256):
            points = [m.PointStruct(id=i, vector=v.tolist(), payload=p)
                      for i, v, p in zip(ids[part], vectors[part], payloads[part])]
            self._call(self.client.upsert, self.collection, points=points, wait=True)

    def _retrieve(self, ids: list[str]) -> dict[str, dict]:
        self._ensure()
        found = self._call(self.client.retrieve, self.collection, ids=list(ids), with_payload=True,
                           with_vectors=False)
        return {str(r.id): r.payload or {} for r in found}

    def _query(self, vector: np.ndarray, where: Where, limit: int, threshold: float
               ) -> list[tuple[str, float, dict]]:
        self._ensure()
        found = self._call(self.client.query_points, self.collection, query=vector.tolist(), limit=limit,
                           query_filter=_filter(where), score_threshold=threshold, with_payload=True)
        return [(str(p.id), float(p.score), p.payload or {}) for p in found.points]

    def _scroll(self, where: Where, vectors: bool = False) -> list[tuple[str, dict, np.ndarray | None]]:
        self._ensure()
        out: list[tuple[str, dict, np.ndarray | None]] = []
        offset = None
        while True:
            records, offset = self._call(self.client.scroll, self.collection, scroll_filter=_filter(where),
                                         limit=_PAGE, offset=offset, with_payload=True, with_vectors=vectors)
            for r in records:
                v = r.vector.get("") if isinstance(r.vector, dict) else r.vector
                out.append((str(r.id), r.payload or {}, np.asarray(v, np.float32) if vectors and v else None))
            if offset is None or not records:
                return out

    def _delete(self, ids: list[str]) -> None:
        self._ensure()
        self._call(self.client.delete, self.collection, points_selector=m.PointIdsList(points=list(ids)), wait=True)

    def _count(self, where: Where) -> int:
        self._ensure()
        return int(self._call(self.client.count, self.collection, count_filter=_filter(where), exact=True).count)

    def close(self) -> None:
        if self._own:
            self._own = False
            self.client.close()
