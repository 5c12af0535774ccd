"""The gallery owner's side of the face library: every operation, on the open gallery, by name.

The running pipeline's identify process serves these over the control socket (``live`` is its Identify, and
``lock`` the lock it holds per frame, so a request never interleaves with a frame's queries); with no pipeline,
the local library calls the very same object in-process with no ``live`` (live-track operations then raise
NotRunning). Arguments and results are plain JSON-able values (photos as bytes, embeddings as float32 arrays:
the control protocol carries both), so both paths behave the same.

Every check is made before anything is written, so a refused request changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.gallery.base import Gallery
from app.gallery.records import GalleryError
from app.library.errors import (
    BadRequest,
    DuplicateName,
    NotRunning,
    UnknownPerson,
    UnknownPhoto,
    UnknownTrack,
    translated,
)
from app.library.negatives import Negatives
from app.library.views import EnrolView, PersonView, PhotoView, TrackView

log = logging.getLogger("facestream.library")

STATUS_TTL = 30.0  # seconds status() may report counts from before a change made elsewhere (a shared server)
PHOTO_SUFFIXES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png"}


class Live(Protocol):
    """What the running identify stage offers the library (see ``Identify``)."""

    negatives: Negatives

    def track_embeddings(self, stream: int, track_id: int) -> np.ndarray: ...
    def tracks(self) -> list[TrackView]: ...
    def enrolled(self) -> None: ...
    def renamed(self, person_id: str, name: str) -> None: ...
    def merged(self, person_id: str, into_id: str, name: str) -> None: ...
    def removed(self, person_id: str) -> None: ...
    def corrected(self, stream: int, track_id: int, person_id: str) -> None: ...
    def status(self) -> dict: ...


def negatives_path(settings) -> Path:
    return Path(settings.qdrant_path) / f"{settings.qdrant_collection}.negatives.npz"


def photo_suffix(data: bytes, filename: str = "") -> str:
    """The kept photo's extension: from its bytes for JPEG/PNG, else from its name (else .jpg)."""
    for magic, suffix in PHOTO_SUFFIXES.items():
        if data.startswith(magic):
            return suffix
    return Path(filename).suffix.lower() or ".jpg"


class GalleryOwner:
    """The library's operations on one open gallery; ``handle(op, args)`` is what the control socket calls."""

    def __init__(self, gallery: Gallery, settings, live: Live | None = None,
                 lock: threading.RLock | None = None, negatives: Negatives | None = None) -> None:
        self.gallery = gallery
        self.settings = settings
        self.live = live
        self.lock = lock or threading.RLock()
        self.negatives = negatives or (live.negatives if live is not None else Negatives(negatives_path(settings)))
        self.socket = ""  # where this owner is served, for status()
        self._changes = 0  # bumped by every change: status() recounts the people only after one
        self._counts: tuple | None = None  # (change stamp, when, embeddings, people)
        self.ops: dict[str, Callable[..., Any]] = {
            name: getattr(self, name) for name in (
                "people", "person", "lookup", "find", "rename", "merge", "remove", "remove_photo", "photo",
                "add", "photo_owner", "search", "enrol_track", "correct_track", "tracks", "status", "ping")}

    # -- dispatch -------------------------------------------------------------------------------------
    def handle(self, op: str, args: dict) -> Any:
        fn = self.ops.get(op)
        if fn is None:
            raise BadRequest(f"unknown library operation {op!r}: one of {', '.join(sorted(self.ops))}")
        try:
            inspect.signature(fn).bind(**args)
        except TypeError as exc:
            raise BadRequest(f"{op}: {exc}") from None
        with self.lock:
            try:
                return fn(**args)
            except (GalleryError, ValueError) as exc:
                ours = translated(exc)
                if ours is exc:
                    raise
                raise ours from None

    # -- reading --------------------------------------------------------------------------------------
    def _view(self, person_id: str, payloads: list[dict] | None = None) -> PersonView:
        if payloads is None:
            payloads = [p for _, p in self.gallery.points_of(person_id)]
        if not payloads:
            raise UnknownPerson(f"no person with id {person_id!r}: `facestream people` lists the ids")
        photos: dict[str, list] = {}
        for p in payloads:
            if p.get("photo"):
                entry = photos.setdefault(p["photo"], [p.get("filename") or Path(str(p.get("source", ""))).name, 0])
                entry[1] += 1
        return PersonView(person_id, str(payloads[0].get("name", "")),
                          [PhotoView(k, n, c) for k, (n, c) in photos.items()], len(payloads))

    def people(self) -> list[dict]:
        grouped: dict[str, list[dict]] = {}
        for _, p in self.gallery.points_of():
            grouped.setdefault(str(p.get("person_id", "")), []).append(p)
        views = [self._view(pid, ps) for pid, ps in grouped.items()]
        return [v.to_dict() for v in sorted(views, key=lambda v: (v.name.casefold(), v.id))]

    def person(self, person_id: str) -> dict:
        return self._view(str(person_id)).to_dict()

    def lookup(self, who: str, by_id: bool = False) -> dict:
        """The person called ``who`` (any case), or with id ``who``: unknown or ambiguous names the closest."""
        return self._view(self.gallery.lookup(who, by_id).person_id).to_dict()

    def find(self, name: str) -> list[dict]:
        """Everyone called ``name`` in any case (one, none, or in a damaged gallery several)."""
        return [self._view(p.person_id).to_dict() for p in self.gallery.find(name)]

    def photo(self, person_id: str, photo_id: str) -> bytes:
        self._view(person_id)
        path = self.gallery.photos.path(photo_id) if self.gallery.photos is not None else None
        if not self.gallery.photo_points(person_id, photo_id) or path is None:
            raise UnknownPhoto(f"person {person_id} has no photo {photo_id!r}")
        return path.read_bytes()

    def photo_owner(self, digest: str, person_id: str | None = None) -> dict | None:
        m = self.gallery.owner_of_key("file:" + str(digest), person_id)
        return None if m is None else {"person_id": m.person_id, "name": m.name, "score": m.score}

    def search(self, embeddings: np.ndarray, threshold: float | None = None, k: int = 1) -> list[list[dict]]:
        """Up to ``k`` people per row at ``threshold`` (MATCH_THRESHOLD by default), corrections applied."""
        x = np.asarray(embeddings, np.float32)
        if x.ndim == 1:
            x = x[None]
        t = self.settings.match_threshold if threshold is None else float(threshold)
        out = []
        for row, top in zip(x, self.gallery.search_top(x, t, k=int(k) + 1) if len(x) else []):
            kept = [m for m in top if not self.negatives.refused(m.person_id, row, m.score)][:int(k)]
            out.append([{"person_id": m.person_id, "name": m.name, "score": m.score} for m in kept])
        return out

    def tracks(self) -> list[dict]:
        return [t.to_dict() for t in self._live("tracks").tracks()]

    def ping(self) -> dict:
        """Cheap liveness check (``status`` counts the gallery)."""
        return {"running": self.live is not None, "gallery": self.gallery.where}

    def status(self) -> dict:
        # a web page asks every second, under identify's lock, and counting 10k points takes ~40 ms: counted
        # again only after a change (ours, or identify storing a stranger), or when STATUS_TTL has passed
        stamp, now = (self._changes, getattr(self.live, "changes", 0)), time.monotonic()
        if self._counts is None or self._counts[0] != stamp or now - self._counts[1] > STATUS_TTL:
            count = self.gallery.count()
            self._counts = (stamp, now, count, len(self.gallery.people()) if count else 0)
        count, people = self._counts[2], self._counts[3]
        out = {"running": self.live is not None, "gallery": self.gallery.where, "people": people,
               "embeddings": count, "corrections": self.negatives.count(), "socket": self.socket}
        if self.live is not None:
            out.update(self.live.status())
        return out

    # -- changing -------------------------------------------------------------------------------------
    def _clean(self, name: str | None) -> str:
        name = (name or "").strip()
        if not name:
            raise BadRequest("a person needs a non-empty name")
        if len(name) > 200:
            raise BadRequest(f"a name of {len(name)} characters is too long (200 at most)")
        return name

    def _free_name(self, name: str, person_id: str | None = None) -> None:
        holder = self.gallery.find(name)
        others = [p for p in holder if p.person_id != person_id]
        if others:
            raise DuplicateName(f"{name!r} is already the name of person {others[0].person_id}: pick another "
                                "name, or add the photos to that person")

    def _done(self, what: str) -> None:
        """Make the change durable before the reply says it is done; say it in the owner's log."""
        self._changes += 1
        self.gallery.flush()
        # the running pipeline's log says what others changed; a CLI run in this process prints it already
        log.log(logging.INFO if self.live is not None else logging.DEBUG, "library: %s", what)

    def rename(self, person_id: str, name: str) -> dict:
        name = self._clean(name)
        self._view(person_id)
        self._free_name(name, person_id)
        self.gallery.rename(person_id, name, by_id=True)
        self._done(f"renamed {person_id} to {name!r}")
        if self.live is not None:
            self.live.renamed(person_id, name)
        return self.person(person_id)

    def merge(self, person_id: str, into_id: str) -> dict:
        if person_id == into_id:
            raise BadRequest(f"cannot merge person {person_id} into themself")
        self._view(person_id)
        into = self._view(into_id)
        self.gallery.merge(person_id, into_id)
        self._done(f"merged {person_id} into {into_id}")
        self.negatives.move(person_id, into_id)
        if self.live is not None:
            self.live.merged(person_id, into_id, into.name)
        return self.person(into_id)

    def remove(self, person_id: str) -> dict:
        """An erase (app/gallery/sightings_erase.py): photos, sightings, snapshots too; ``erased`` counts them."""
        from app.gallery.sightings_erase import erase_in_library

        view = self._view(person_id)
        erased = erase_in_library(self.gallery, self.settings, person_id)
        self._done(f"removed {person_id} ({view.embeddings} embedding(s); erased {erased})")
        self.negatives.drop(person_id)
        if self.live is not None:
            self.live.removed(person_id)
        return {**view.to_dict(), "erased": erased}

    def remove_photo(self, person_id: str, photo_id: str) -> dict:
        """Delete the embeddings made from one kept photo (the file stays: another collection may share it)."""
        view = self._view(person_id)
        ids = self.gallery.photo_points(person_id, photo_id)
        if not ids:
            raise UnknownPhoto(f"person {person_id} ({view.name}) has no photo {photo_id!r}")
        if len(ids) >= view.embeddings:  # a person is their embeddings: none left would delete them unasked
            raise BadRequest(f"that photo holds all of {view.name}'s embeddings: remove the person instead")
        self.gallery.delete_points(ids)
        self._done(f"removed photo {photo_id} of {person_id} ({len(ids)} embedding(s))")
        if self.live is not None:
            self.live.enrolled()  # their tracks are re-asked: the photo may have been what named them
        return self.person(person_id)

    def add(self, name: str | None, embeddings: np.ndarray, person_id: str | None = None,
            photos: list | None = None, new: bool = True, create: bool = False) -> dict:
        """Store embeddings (N, 512) for a person; ``photos``: per row (filename, bytes) or None.

        ``person_id`` None: a new person called ``name`` (``new``: DuplicateName if the name is taken; else
        the holder of the name gets them). With ``person_id``: more for that person (UnknownPerson unless
        ``create``: a new person with that id, as a folder enrolment makes)."""
        x = np.asarray(embeddings, np.float32)
        if x.ndim != 2 or not len(x):
            raise BadRequest("nothing to enrol: no embeddings")
        rows = list(photos) if photos is not None else [None] * len(x)
        if len(rows) != len(x):
            raise BadRequest(f"{len(rows)} photos for {len(x)} embeddings")
        if person_id is not None:
            existing = next(self.gallery.points_of(person_id), None)
            if existing is None and not create:
                raise UnknownPerson(f"no person with id {person_id!r}: `facestream people` lists the ids")
            name = str(existing[1].get("name")) if existing is not None else self._clean(name)
            if existing is None:
                self._free_name(name)
        else:
            name = self._clean(name)
            if new:
                self._free_name(name)
        sources, filenames, new_files = [], [], []
        try:
            for row in rows:
                if row is None:
                    sources.append("")
                    filenames.append("")
                    continue
                filename, data = str(row[0]), bytes(row[1])
                if self.gallery.photos is None:
                    sources.append("")
                else:
                    kept = f"{hashlib.sha256(data).hexdigest()}{photo_suffix(data, filename)}"
                    existed = self.gallery.photos.path(kept) is not None
                    _, path = self.gallery.photos.put_bytes(data, photo_suffix(data, filename))
                    if not existed:
                        new_files.append(path)
                    sources.append(str(path))
                filenames.append(Path(filename).name)
            result = self.gallery.add(name, x, person_id=person_id, source=sources, filenames=filenames)
        except BaseException:  # a failed enrolment leaves no photo of its own behind
            for path in new_files:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        self._done(f"enrolled {result.person_id or name!r}: {result.written} new, {result.already} already, "
                   f"{result.spooled} spooled")
        if self.live is not None:
            self.live.enrolled()
        pid = result.person_id or person_id or ""
        try:
            person = self._view(pid)
        except UnknownPerson:  # spooled for a server that is down: not listed until written
            person = PersonView(pid, name, [], 0)
        return EnrolView(person, result.written, result.already, result.spooled, list(result.taken)).to_dict()

    # -- live tracks ----------------------------------------------------------------------------------
    def _live(self, what: str) -> Live:
        if self.live is None:
            raise NotRunning(f"{what} needs a running pipeline (facestream run): no pipeline owns the gallery")
        return self.live

    def _track(self, stream: int, track_id: int) -> np.ndarray:
        try:
            return self._live("a live track").track_embeddings(int(stream), int(track_id))
        except KeyError:
            raise UnknownTrack(f"no track {track_id} on stream {stream} (live or ended in the last minutes): "
                               "the recent faces list the tracks") from None

    def enrol_track(self, stream: int, track_id: int, name: str | None = None, person_id: str | None = None,
                    photos: list | None = None) -> dict:
        """Enrol the embeddings identify kept of a track, as a new person (``name``) or as ``person_id``;
        ``photos`` (crops) are kept as the person's photos, the track's embeddings shared out among them."""
        if (name is None) == (person_id is None):
            raise BadRequest("say who the track is: a new person's name, or an existing person's id (not both)")
        emb = self._track(stream, track_id)
        crops = [(str(f), bytes(b)) for f, b in (photos or [])]
        rows = [crops[i % len(crops)] if crops else None for i in range(len(emb))]
        view = self.add(name, emb, person_id=person_id, photos=rows, new=True)
        return view["person"]

    def correct_track(self, stream: int, track_id: int, not_person_id: str) -> dict:
        """"Not that person": the track is un-named now, and its embeddings kept as that person's negatives."""
        emb = self._track(stream, track_id)
        self._view(not_person_id)
        self.negatives.add(not_person_id, emb)
        log.info("library: track %d of stream %d is not %s (%d correction(s) kept)", int(track_id), int(stream),
                 not_person_id, len(emb))
        self.live.corrected(int(stream), int(track_id), not_person_id)
        track = next((t for t in self.live.tracks() if (t.stream, t.track_id) == (int(stream), int(track_id))), None)
        return track.to_dict() if track is not None else {}

