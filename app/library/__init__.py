"""The face library: people, their photos and live tracks, the same whether a pipeline runs or not.

``open_library(settings)`` gives the running pipeline's library (its identify process owns the gallery and
answers on a Unix socket beside the gallery's lock file, see ``socket_path``) or, with no pipeline, a local
one that opens the gallery itself. Every method raises only the errors of ``app.library.errors`` (each with an
HTTP ``status``), and a refused request changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from app.gallery.records import GalleryBusy, Match
from app.library.errors import (
    BadPhoto,
    BadRequest,
    DuplicateName,
    GalleryUnavailable,
    LibraryError,
    NotRunning,
    UnknownPerson,
    UnknownPhoto,
    UnknownTrack,
    WrongModel,
)
from app.library.views import EnrolView, PersonView, PhotoView, TrackView

__all__ = ["BadPhoto", "BadRequest", "DuplicateName", "EnrolView", "GalleryUnavailable", "Library", "LibraryError",
           "Match", "NotRunning", "PersonView", "PhotoView", "TrackView", "UnknownPerson", "UnknownPhoto",
           "UnknownTrack", "WrongModel", "open_library", "socket_path"]

_SUN_PATH_MAX = 107  # a Unix socket's path is at most 108 bytes with its terminating NUL
STARTING_WAIT = 15.0  # seconds to wait for a pipeline that holds the gallery but is not serving yet


class Library(Protocol):
    """The face library's operations (``app.library.client.OwnerLibrary`` implements them).

    - ``people()`` everyone, by name; ``person(id)``; ``lookup(who, by_id=False)`` by name in any case.
    - ``enrol_photos(name, photos, person_id=None)``: a new person called ``name`` (DuplicateName if taken), or
      more photos for ``person_id``; every photo (filename, bytes) must decode and hold one face (BadPhoto,
      naming the file); the models run in the caller's process, on the CPU.
    - ``rename``, ``merge(person_id, into_id)`` (into keeps their name), ``remove``, ``remove_photo``,
      ``photo(person_id, photo_id)`` -> the kept JPEG/PNG bytes.
    - ``enrol_track(stream, track_id, name=None, person_id=None, photos=())``: the embeddings identify kept of a
      live or recently ended track, as a new person or an existing one; ``photos`` (crops) kept as photos.
    - ``correct_track(stream, track_id, not_person_id)``: the track is un-named now; its embeddings are kept as
      that person's negatives, so a match that close to them is refused from now on.
    - ``tracks()`` the live and recently ended tracks (NotRunning without a pipeline).
    - ``search(embeddings)`` -> best Match (>= MATCH_THRESHOLD) or None per row; ``status()`` -> dict.
    """

    running: bool

    def people(self) -> list[PersonView]: ...
    def person(self, person_id: str) -> PersonView: ...
    def lookup(self, who: str, by_id: bool = False) -> PersonView: ...
    def enrol_photos(self, name: str | None, photos: Sequence[tuple[str, bytes]],
                     person_id: str | None = None, largest: bool = False) -> EnrolView: ...
    def rename(self, person_id: str, name: str) -> PersonView: ...
    def merge(self, person_id: str, into_id: str) -> PersonView: ...
    def remove(self, person_id: str) -> PersonView: ...
    def remove_photo(self, person_id: str, photo_id: str) -> PersonView: ...
    def photo(self, person_id: str, photo_id: str) -> bytes: ...
    def enrol_track(self, stream: int, track_id: int, name: str | None = None, person_id: str | None = None,
                    photos: Sequence[tuple[str, bytes]] = ()) -> PersonView: ...
    def correct_track(self, stream: int, track_id: int, not_person_id: str) -> dict: ...
    def tracks(self) -> list[TrackView]: ...
    def search(self, embeddings: np.ndarray) -> list[Match | None]: ...
    def status(self) -> dict: ...
    def close(self) -> None: ...


def socket_path(settings) -> Path:
    """``QDRANT_PATH/<collection>.sock``, beside the embedded gallery's lock file. With QDRANT_URL too: that
    folder is this machine's side of the gallery (kept photos, the spool), so one pipeline per folder serves it.
    A path too long for a Unix socket is replaced by one in the temp folder named by its hash."""
    path = Path(settings.qdrant_path).absolute() / f"{settings.qdrant_collection}.sock"
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"facestream-{os.getuid()}-{digest}.sock"


def open_library(settings, timeout: float | None = None, wait: float = STARTING_WAIT) -> Library:
    """The running pipeline's library if one answers on ``socket_path``, else a local one (which holds the
    gallery until ``close``). A pipeline that holds the gallery but does not serve yet (starting) is waited
    for up to ``wait`` seconds."""
    from app.control.client import DEFAULT_TIMEOUT, ControlClient
    from app.library.client import LocalLibrary, RemoteLibrary

    client = ControlClient(socket_path(settings), timeout=timeout or DEFAULT_TIMEOUT)

    def remote() -> Library:
        client.call("ping")
        return RemoteLibrary(settings, client)

    return owner_or_local(client, remote, lambda: LocalLibrary(settings), wait)


def owner_or_local(client, remote, local, wait: float = STARTING_WAIT):
    """``remote()`` if a pipeline answers on ``client``'s socket, else ``local()`` (which opens the gallery here);
    while the gallery is held by a pipeline that does not answer yet (starting), both are tried again for up to
    ``wait`` seconds, then one clear error."""
    from app.control.client import NoOwner

    deadline = time.monotonic() + wait
    while True:
        try:
            return remote()
        except NoOwner:
            pass
        try:
            return local()
        except GalleryBusy as exc:
            if time.monotonic() >= deadline:
                raise GalleryUnavailable(f"{exc}, but it does not answer on {client.path}: if it is starting, try "
                                         "again in a few seconds") from None
            time.sleep(0.2)
