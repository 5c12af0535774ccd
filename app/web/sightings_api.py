"""``/api/sightings``: the stored sightings (SIGHTINGS=known|all) for the web app — the review queue's unknown faces
and "seen before" searches by a face.

The store is opened per request: the embedded one takes its turn on the folder beside the identify stage's writer
(app/gallery/sightings_edge.py), so holding it open here would block the pipeline's writes.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.errors import FacestreamError
from app.gallery.sightings import Hit, Where, parse_since, sightings_from_settings
from app.web.errors import WebError
from app.web.uploads import decode, read_photo

router = APIRouter(prefix="/api", tags=["sightings"])


def _web(request: Request):
    return request.app.state.web


def _since(text: str | None) -> float | None:
    """Seconds ago (``3600``) or the CLI's forms (``30m``, ``2h``, ``7d``, a date)."""
    if not text:
        return None
    try:
        return time.time() - float(text)
    except ValueError:
        pass
    try:
        return parse_since(text)
    except FacestreamError as exc:
        raise WebError(422, str(exc).replace("--since", "since")) from None


def _limit(limit: int) -> int:
    if not 1 <= limit <= 500:
        raise WebError(422, f"limit {limit}: give 1 to 500")
    return limit


def hit_json(hit: Hit) -> dict:
    s = hit.sighting
    return {"id": hit.id, "stream": s.stream, "track_id": s.track_id, "first_seen": s.first_seen,
            "last_seen": s.last_seen, "known": s.known, "person_id": s.person_id or None, "name": s.name,
            "nearest": s.nearest or None, "similarity": round(float(s.similarity), 3),
            "score": None if hit.score is None else round(float(hit.score), 3),
            "snapshot": f"/api/sightings/{hit.id}/snapshot.jpg" if s.snapshot else None}


@router.get("/sightings", summary="Stored sightings, newest first (filters: unknown, name, stream, since, limit)")
def list_sightings(request: Request, unknown: Annotated[bool, Query()] = False,
                   name: Annotated[str | None, Query()] = None, stream: Annotated[int | None, Query()] = None,
                   since: Annotated[str | None, Query()] = None, limit: Annotated[int, Query()] = 50) -> dict:
    where, most = Where(name=name or None, stream=stream, since=_since(since), unknown_only=unknown), _limit(limit)
    with sightings_from_settings(_web(request).settings) as store:
        hits = store.list(where, most)
    return {"sightings": [hit_json(h) for h in hits]}


@router.get("/sightings/{sighting_id}/snapshot.jpg", summary="A sighting's stored snapshot (JPEG)",
            response_class=Response)
def sighting_snapshot(sighting_id: str, request: Request) -> Response:
    try:
        sid = str(uuid.UUID(sighting_id))
    except ValueError:
        raise WebError(404, f"no sighting {sighting_id!r}: pick one from /api/sightings") from None
    with sightings_from_settings(_web(request).settings) as store:
        found = store.get(sid)
        folder = store.snapshots.resolve()
    if found is None or not found.snapshot:
        raise WebError(404, f"sighting {sid} has no snapshot: pick one from /api/sightings")
    path = Path(found.snapshot).resolve()
    if path.parent != folder or not path.is_file():  # never a file outside the snapshots folder
        raise WebError(404, f"sighting {sid}'s snapshot is gone: it was pruned or deleted")
    return Response(path.read_bytes(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


async def _query_image(request: Request) -> tuple[str, bytes]:
    """The face to look for: a multipart ``image``, or ``{"stream", "track"}`` = that live track's best crop."""
    web = _web(request)
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise WebError(422, "no image: send the photo in the 'image' field (multipart)")
        return await run_in_threadpool(read_photo, upload, int(web.settings.upload_max_mb * 1e6))
    try:
        body = json.loads(await request.body())
        stream, track = int(body["stream"]), int(body["track"])
    except (ValueError, TypeError, KeyError):
        raise WebError(422, 'send a multipart \'image\' or JSON {"stream": S, "track": T}') from None
    if web.live.recent.get(stream, track) is None:
        raise WebError(404, f"no track {track} on stream {stream} in the last minutes: pick one from /api/tracks")
    crops = web.live.recent.crops(stream, track)
    if not crops:
        raise WebError(404, f"track {track} on stream {stream} has no crop yet: try again in a moment")
    return f"stream{stream}-track{track}.jpg", crops[0]


@router.post("/sightings/search", summary='Sightings of a face (multipart image, or JSON {"stream", "track"})')
async def search_sightings(request: Request, limit: Annotated[int, Query()] = 20,
                           threshold: Annotated[float | None, Query()] = None) -> dict:
    web = _web(request)
    _limit(limit)
    name, data = await _query_image(request)
    return await run_in_threadpool(_search, web, name, data, limit, threshold)


def _search(web, name: str, data: bytes, limit: int, threshold: float | None) -> dict:
    vector = web.recognizer.embed_largest(decode(data, name))
    if vector is None:
        raise WebError(422, f"{name}: no face found — use a photo where the face is clearly visible")
    cut = web.settings.match_threshold if threshold is None else threshold
    with sightings_from_settings(web.settings) as store:
        hits = store.search(np.asarray(vector, np.float32), Where(), limit, cut)
    return {"sightings": [hit_json(h) for h in hits]}
