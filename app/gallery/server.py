"""Gallery on a Qdrant server or cluster through qdrant-client (``QDRANT_URL`` set).

Searches use ``query_batch_points`` (one request for all faces of a frame), never the removed
``search``. The same class drives qdrant-client's local mode (``location=":memory:"`` or ``path=``),
which the tests use in place of a server. With a spool folder, enrolments made while the server
is unreachable wait on local disk and are written when it answers again.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from app.gallery.base import Gallery, _clean_name, batched
from app.gallery.outage import Outage
from app.gallery.photos import PhotoStore
from app.gallery.records import (
    DIM,
    INDEXED_FIELDS,
    META_KEY,
    META_VALUE,
    PAYLOAD_FIELDS,
    AddResult,
    Embedder,
    GalleryError,
    GalleryUnavailable,
    prepare,
)
from app.gallery.spool import Spool
from app.redact import add_secret, redact

log = logging.getLogger(__name__)
T = TypeVar("T")

_UPSERT_BATCH = 256
_SCROLL_PAGE = 1000
_UNREACHABLE_HTTP = {502, 503, 504}


def qdrant_client(client: QdrantClient | None, url: str | None, api_key: str | None, prefer_grpc: bool,
                  timeout: int, path: str | os.PathLike | None, location: str | None) -> tuple[QdrantClient, str]:
    """The client to use (the given one, a server's at ``url``, local storage at ``path``, or memory) and where
    it points, for messages (a server's URL with its credentials masked; the API key never shown)."""
    add_secret(api_key)
    if client is not None:
        return client, "the given client"
    if url:
        return QdrantClient(url=url, api_key=api_key, prefer_grpc=prefer_grpc, timeout=timeout,
                            check_compatibility=False), redact(url)
    if path is not None:
        return QdrantClient(path=str(path)), f"local storage {path}"
    return QdrantClient(location=location or ":memory:"), "local memory"


def _grpc_code(exc: Exception) -> str | None:
    code = getattr(exc, "code", None)
    try:
        return code().name if callable(code) else None
    except Exception:
        return None


def _person(person_id: str | None = None, name_key: str | None = None) -> m.Filter:
    """Points of a person (or all people's points), never the embedder record."""
    pairs = (("person_id", person_id), ("name_key", name_key))
    must = [m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in pairs if v is not None]
    return m.Filter(must=must or None, must_not=[m.FieldCondition(key=META_KEY, match=m.MatchValue(value=META_VALUE))])


class ServerGallery(Gallery):
    """The gallery as collection ``collection`` of a Qdrant server (or of a local-mode client)."""

    def __init__(self, collection: str = "faces", dim: int = DIM, *, url: str | None = None,
                 api_key: str | None = None, prefer_grpc: bool = False, client: QdrantClient | None = None,
                 location: str | None = None, path: str | os.PathLike | None = None, timeout: int = 10,
                 spool_dir: str | os.PathLike | None = None, embedder: Embedder | None = None,
                 photos_dir: str | os.PathLike | None = None, connect: bool = True) -> None:
        """``connect=False``: nothing is asked of the server until ``connect()`` or the first call."""
        self.dim = dim
        self.collection = collection
        self.embedder = embedder
        self.photos = PhotoStore(photos_dir) if photos_dir is not None else None
        self.outage = Outage()
        self.client, where = qdrant_client(client, url, api_key, prefer_grpc, timeout, path, location)
        self.where = f"collection {collection!r} at {where}"
        self.spool = Spool(spool_dir) if spool_dir is not None else None
        self._ready = False
        self._closed = False
        if not connect:
            return
        try:
            self._ensure_collection()
        except GalleryUnavailable as exc:
            if self.spool is None:
                self._close_own(client)
                raise
            log.warning("gallery: %s; enrolments wait in %s until it answers", exc, self.spool.folder)
        except BaseException:
            self._close_own(client)
            raise
        else:
            self.flush_spool()
            log.info("gallery: %s (%d-d, cosine)", self.where, dim)

    # -- talking to the server ----------------------------------------------------------------
    def _call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run a client call, turning transport failures into GalleryUnavailable and auth failures into one line."""
        try:
            out = fn(*args, **kwargs)
        except GalleryUnavailable:
            raise
        except Exception as exc:
            error = self._translate(exc)
            if isinstance(error, GalleryUnavailable):
                self.outage.down()
            if error is None:
                raise
            raise error from None
        self.outage.up()
        return out

    def _translate(self, exc: Exception) -> GalleryError | None:
        """The one-line error for a client failure (None: not a failure we know, raised as it is)."""
        if isinstance(exc, UnexpectedResponse):
            if exc.status_code in (401, 403):
                return GalleryError(f"Qdrant refused access to {self.where}: check QDRANT_API_KEY")
            if exc.status_code in _UNREACHABLE_HTTP:
                return GalleryUnavailable(f"Qdrant is not answering for {self.where} (HTTP {exc.status_code})")
            return GalleryError(f"Qdrant error on {self.where}: {redact(str(exc))}")
        if isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError)):
            return GalleryUnavailable(f"cannot reach Qdrant for {self.where}: {redact(str(exc))}")
        code = _grpc_code(exc)
        if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
            return GalleryUnavailable(f"cannot reach Qdrant for {self.where} (gRPC {code})")
        if code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            return GalleryError(f"Qdrant refused access to {self.where}: check QDRANT_API_KEY")
        return None

    def _ensure_collection(self) -> None:
        if self._ready:
            return
        if not self._call(self.client.collection_exists, self.collection):
            try:
                self._call(self.client.create_collection, self.collection,
                           vectors_config=m.VectorParams(size=self.dim, distance=m.Distance.COSINE))
            except (GalleryUnavailable, GalleryError):
                raise
            except Exception:  # another pipeline created it first: fine if it now exists
                if not self._call(self.client.collection_exists, self.collection):
                    raise
        self._check_vectors()
        with warnings.catch_warnings():  # local mode warns that payload indexes do nothing there
            warnings.simplefilter("ignore", UserWarning)
            for field in INDEXED_FIELDS:
                self._call(self.client.create_payload_index, self.collection, field,
                           field_schema=m.PayloadSchemaType.KEYWORD, wait=True)
        self._ready = True  # before the embedder check, whose calls come back here
        try:
            self._bind_embedder()
        except BaseException:
            self._ready = False
            raise

    def connect(self) -> None:
        """Reach the server now (start-up checks) and write what waits in the spool: GalleryUnavailable if it does
        not answer."""
        self._ensure_collection()
        self.flush_spool()

    def _check_vectors(self) -> None:
        params = self._call(self.client.get_collection, self.collection).config.params.vectors
        if isinstance(params, dict):
            params = params.get("")
        size = getattr(params, "size", None)
        distance = getattr(params, "distance", None)
        if size != self.dim or distance != m.Distance.COSINE:
            shown = "named" if params is None else f"{size}-d {getattr(distance, 'value', distance)}"
            raise GalleryError(f"{self.where} holds {shown} vectors but the embedder makes {self.dim}-d Cosine ones: "
                               f"use another QDRANT_COLLECTION, or delete that collection")

    # -- primitives ---------------------------------------------------------------------------
    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None:
        for part in batched(ids, _UPSERT_BATCH):
            points = [m.PointStruct(id=i, vector=v.tolist(), payload=p)
                      for i, v, p in zip(ids[part], vectors[part], payloads[part])]
            self._call(self.client.upsert, self.collection, points=points, wait=True)

    def _retrieve(self, ids: list[str]) -> dict[str, dict]:
        self._ensure_collection()
        found = self._call(self.client.retrieve, self.collection, ids=list(ids), with_payload=True,
                           with_vectors=False)
        return {str(r.id): r.payload or {} for r in found}

    def _query(self, vectors: np.ndarray, limit: int, threshold: float) -> list[list[tuple[float, dict]]]:
        self._ensure_collection()
        requests = [m.QueryRequest(query=v.tolist(), limit=limit, score_threshold=threshold, filter=_person(),
                                   with_payload=PAYLOAD_FIELDS) for v in vectors]
        responses = self._call(self.client.query_batch_points, self.collection, requests=requests)
        return [[(float(p.score), p.payload or {}) for p in r.points] for r in responses]

    def _scroll(self, person_id: str | None = None, name_key: str | None = None,
                limit: int | None = None, full: bool = False) -> Iterator[tuple[str, dict]]:
        self._ensure_collection()
        offset, given = None, 0
        while True:
            page = _SCROLL_PAGE if limit is None else min(_SCROLL_PAGE, limit - given)
            records, offset = self._call(self.client.scroll, self.collection,
                                         scroll_filter=_person(person_id, name_key), limit=page, offset=offset,
                                         with_payload=True if full else PAYLOAD_FIELDS, with_vectors=False)
            for r in records:
                yield str(r.id), r.payload or {}
            given += len(records)
            if offset is None or not records or (limit is not None and given >= limit):
                return

    def _count(self, person_id: str | None = None) -> int:
        self._ensure_collection()
        return int(self._call(self.client.count, self.collection, count_filter=_person(person_id), exact=True).count)

    def _set_payload(self, person_id: str, payload: dict) -> None:
        self._call(self.client.set_payload, self.collection, payload=payload, points=_person(person_id),
                   wait=True)

    def _delete_person(self, person_id: str) -> None:
        self._call(self.client.delete, self.collection, points_selector=m.FilterSelector(filter=_person(person_id)),
                   wait=True)

    def _delete_ids(self, ids: list[str]) -> None:
        self._call(self.client.delete, self.collection, points_selector=m.PointIdsList(points=list(ids)), wait=True)

    # -- enrolment with a spool ---------------------------------------------------------------
    def add(self, name: str, embeddings: np.ndarray, person_id: str | None = None,
            source: list[str] | None = None, filenames: list[str] | None = None) -> AddResult:
        """As ``Gallery.add``; with a spool, an unreachable server keeps the embeddings for later."""
        name = _clean_name(name)
        prep = prepare(embeddings, self.dim, source, filenames)
        if self.spool is None:
            self._ensure_collection()
            return self._write(name, person_id, prep)
        try:
            self._ensure_collection()
            self.flush_spool()
            return self._write(name, person_id, prep)
        except GalleryUnavailable as exc:
            self.keep_photos(prep)  # the photos stay even if their files are gone by the time the server answers
            self.spool.put(name, person_id, prep)
            log.warning("gallery: %s; %d embedding(s) of %s kept in %s", exc, len(prep.keys), name, self.spool.folder)
            return AddResult(person_id=person_id or "", name=name, spooled=len(prep.keys))

    def flush_spool(self) -> int:
        """Write spooled enrolments now; returns how many entries went (raises GalleryUnavailable if still down)."""
        if self.spool is None:
            return 0
        self._ensure_collection()

        n = self.spool.drain(lambda entry: self._write(entry.name, entry.person_id, entry.prepared))
        if n:
            log.info("gallery: wrote %d spooled enrolment(s) to %s", n, self.where)
        return n

    def _close_own(self, given: QdrantClient | None) -> None:
        """A client this gallery made is closed when opening fails (local mode would stay locked)."""
        if given is None:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.client.close()
