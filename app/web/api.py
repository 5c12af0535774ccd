"""The REST API (``/api/...``): the same operations the pages use. Errors: see errors.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.types import UNKNOWN
from app.web.errors import WebError, one_line
from app.web.uploads import decode, read_photo, read_photos
from app.web.views import enrol_json, person_json, sniff_type

router = APIRouter(prefix="/api", tags=["api"])


class PersonChange(BaseModel):
    """Rename (``name``) or merge into another person (``merge_into``: that person's id); one of the two."""

    name: str | None = None
    merge_into: str | None = None


class TrackEnrol(BaseModel):
    """``name``: a new person (or the existing one of that name is refused: use its id); ``person_id``: add the
    track to that person."""

    name: str | None = None
    person_id: str | None = None


class TrackNot(BaseModel):
    """The person the track is *not*; default: the one it is named as now."""

    person_id: str | None = None


def _web(request: Request):
    return request.app.state.web


def _max_bytes(request: Request) -> int:
    return int(_web(request).settings.upload_max_mb * 1e6)


def _name(value: str | None) -> str | None:
    if value is None:
        return None
    name = " ".join(value.split())
    if not name:
        raise WebError(422, "the name is empty: type a name")
    if len(name) > 100:
        raise WebError(422, "the name is longer than 100 characters: shorten it")
    return name


@router.get("/people", summary="Every person, with photo URLs and embedding counts")
def list_people(request: Request) -> list[dict]:
    return [person_json(p) for p in _web(request).library.get().people()]


@router.get("/people/{person_id}", summary="One person")
def get_person(person_id: str, request: Request) -> dict:
    return person_json(_web(request).library.get().person(person_id))


@router.post("/people", status_code=201, summary="A new person from a name and one or more photos (multipart)")
def create_person(request: Request, name: Annotated[str, Form()],
                  photos: Annotated[list[UploadFile], File()]) -> dict:
    files = read_photos(photos, _max_bytes(request))
    return enrol_json(_web(request).library.get().enrol_photos(_name(name), files))


@router.patch("/people/{person_id}", summary='Rename ({"name": ...}) or merge into another ({"merge_into": id})')
def change_person(person_id: str, change: PersonChange, request: Request) -> dict:
    if (change.name is None) == (change.merge_into is None):
        raise WebError(422, 'send either {"name": NEW_NAME} to rename or {"merge_into": PERSON_ID} to merge')
    lib = _web(request).library.get()
    if change.merge_into is not None:
        if change.merge_into == person_id:
            raise WebError(422, "a person cannot be merged into themselves: pick another person")
        return person_json(lib.merge(person_id, change.merge_into))
    return person_json(lib.rename(person_id, _name(change.name)))


@router.delete("/people/{person_id}", summary="Remove a person (their photos and embeddings)")
def delete_person(person_id: str, request: Request) -> dict:
    return person_json(_web(request).library.get().remove(person_id))


@router.post("/people/{person_id}/photos", status_code=201, summary="More photos for a person (multipart)")
def add_photos(person_id: str, request: Request, photos: Annotated[list[UploadFile], File()]) -> dict:
    lib = _web(request).library.get()
    person = lib.person(person_id)  # unknown id: 404 before the photos are embedded
    files = read_photos(photos, _max_bytes(request))
    return enrol_json(lib.enrol_photos(person.name, files, person_id=person_id))


@router.get("/people/{person_id}/photos/{photo_id}", summary="One kept photo (JPEG/PNG as enrolled)",
            response_class=Response)
def get_photo(person_id: str, photo_id: str, request: Request) -> Response:
    data = _web(request).library.get().photo(person_id, photo_id)
    return Response(data, media_type=sniff_type(data), headers={"Cache-Control": "private, max-age=3600"})


@router.delete("/people/{person_id}/photos/{photo_id}", summary="Remove one photo (and its embedding)")
def delete_photo(person_id: str, photo_id: str, request: Request) -> dict:
    return person_json(_web(request).library.get().remove_photo(person_id, photo_id))


@router.get("/tracks", summary="Tracks seen in the last minutes, per stream, newest first, with crop URLs")
def list_tracks(request: Request, stream: Annotated[int | None, Query()] = None,
                live: Annotated[bool, Query()] = False) -> dict:
    web = _web(request)
    rows = web.live.recent.tracks(stream)
    if live:
        rows = [r for r in rows if r["live"]]
    return {"streams": [{**s, "tracks": [r for r in rows if r["stream"] == s["stream"]]}
                        for s in web.live.streams_json() if stream is None or s["stream"] == stream]}


def _track(request: Request, stream: int, track_id: int) -> dict:
    row = _web(request).live.recent.get(stream, track_id)
    if row is None:
        raise WebError(404, f"no track {track_id} on stream {stream} in the last minutes: pick one from /api/tracks")
    return row


@router.get("/tracks/{stream}/{track_id}/crop.jpg", summary="The track's best crop", response_class=Response)
def track_crop(stream: int, track_id: int, request: Request) -> Response:
    _track(request, stream, track_id)
    crops = _web(request).live.recent.crops(stream, track_id)
    if not crops:
        raise WebError(404, f"track {track_id} on stream {stream} has no crop yet: try again in a moment")
    return Response(crops[0], media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


@router.post("/tracks/{stream}/{track_id}/enrol", status_code=201,
             summary='"This is ...": enrol the track as a new person ({"name"}) or an existing one ({"person_id"})')
def enrol_track(stream: int, track_id: int, body: TrackEnrol, request: Request) -> dict:
    if (body.name is None) == (body.person_id is None):
        raise WebError(422, 'send either {"name": NAME} for a new person or {"person_id": ID} for an existing one')
    web = _web(request)
    _track(request, stream, track_id)
    crops = web.live.recent.crops(stream, track_id)
    photos = [(f"stream{stream}-track{track_id}-{k}.jpg", jpeg) for k, jpeg in enumerate(crops)]
    person = web.library.get().enrol_track(stream, track_id, name=_name(body.name), person_id=body.person_id,
                                           photos=photos)
    web.live.recent.name(stream, track_id, person.name, str(person.id))
    return person_json(person)


@router.post("/tracks/{stream}/{track_id}/not", summary='"Not ...": un-name the track and keep the correction')
def not_track(stream: int, track_id: int, request: Request, body: TrackNot | None = None) -> dict:
    row = _track(request, stream, track_id)
    person_id = (body.person_id if body else None) or row.get("person_id")
    if not person_id:
        raise WebError(422, f"track {track_id} is not named: nothing to correct (send {{\"person_id\": ID}})")
    _web(request).library.get().correct_track(stream, track_id, person_id)
    _web(request).live.recent.name(stream, track_id, UNKNOWN)
    return {"stream": stream, "track_id": track_id, "not_person_id": person_id}


@router.post("/tracks/{stream}/{track_id}/dismiss", summary="Take an unknown track off the review queue")
def dismiss_track(stream: int, track_id: int, request: Request) -> dict:
    _track(request, stream, track_id)
    _web(request).live.recent.dismiss(stream, track_id)
    return {"stream": stream, "track_id": track_id, "dismissed": True}


@router.post("/recognize", summary="Every face of an uploaded image: box, name, similarity")
def recognize(request: Request, image: Annotated[UploadFile, File()]) -> dict:
    web = _web(request)
    name, data = read_photo(image, _max_bytes(request))
    faces = web.recognizer(decode(data, name), web.library.get())
    return {"faces": faces}


@router.get("/stats", summary="Per-stage FPS, queue depth, drops and latency; source and gallery status")
def stats(request: Request) -> JSONResponse:
    web = _web(request)
    out = web.live.stats()
    try:
        out["gallery"] = web.library.get().status()
    except Exception as exc:  # noqa: BLE001 - the stats page stays up while the gallery is away; it says why
        out["gallery"] = {"error": one_line(str(exc))}
    return JSONResponse(jsonable_encoder(out))
