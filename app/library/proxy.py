"""The gallery calls ``facestream enrol`` makes, sent to the running pipeline's library owner instead.

The enrolment logic (a photo already enrolled, a look-alike of someone else, folders of people) stays in one
place, ``app.cli.people.enrol``, whichever process owns the gallery: this object answers the handful of
gallery methods it uses through the control channel, sending each photo's bytes to be kept by the owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.gallery.records import AddResult, Match, Person, file_digest
from app.library.views import PersonView


def _person(view: dict) -> Person:
    v = PersonView.from_dict(view)
    return Person(v.id, v.name, v.embeddings)


class GalleryProxy:
    """A stand-in for ``Gallery`` (person, find, photo_owner, search_top, add) over a library ``call``."""

    def __init__(self, call, where: str = "") -> None:
        self.call = call
        self.where = where

    def person(self, person_id: str) -> Person | None:
        from app.library.errors import UnknownPerson

        try:
            return _person(self.call("person", person_id=person_id))
        except UnknownPerson:
            return None

    def find(self, name: str) -> list[Person]:
        return [_person(v) for v in self.call("find", name=name)]

    def photo_owner(self, photo: str | Path, person_id: str | None = None) -> Match | None:
        digest = file_digest(photo)
        if digest is None:
            return None
        found = self.call("photo_owner", digest=digest, person_id=person_id)
        return None if found is None else Match(**found)

    def search_top(self, embeddings: np.ndarray, threshold: float, k: int = 3) -> list[list[Match]]:
        rows = self.call("search", embeddings=np.asarray(embeddings, np.float32), threshold=float(threshold), k=k)
        return [[Match(**m) for m in row] for row in rows]

    def add(self, name: str, embeddings: np.ndarray, person_id: str | None = None,
            source: Sequence[str] | None = None) -> AddResult:
        paths = list(source) if source is not None else []
        photos = [(Path(p).name, Path(p).read_bytes()) if p else None for p in paths] or None
        view = self.call("add", name=name, embeddings=np.asarray(embeddings, np.float32), person_id=person_id,
                         photos=photos, new=False, create=True)
        person = PersonView.from_dict(view["person"])
        return AddResult(person.id, person.name, written=int(view["added"]), already=int(view["already"]),
                         spooled=int(view.get("spooled", 0)), taken=tuple(tuple(t) for t in view["taken"]))

    def close(self) -> None:
        """Nothing held: the owner keeps the gallery."""
