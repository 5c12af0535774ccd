"""Erase a person so that nothing of them is left: their embeddings, kept photos, sightings and snapshots, and the
unknown sightings whose face matches them (the same person seen before they were enrolled, or while unnamed).

Everything to delete is found first; then sightings (and their snapshot files) go, then the person's points, then
their photo files. A photo file is deleted only when no point left in the gallery names it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.gallery.base import Gallery
from app.gallery.records import Person
from app.gallery.sightings import SightingStore, Where

_SEARCH_LIMIT = 100_000  # unknown sightings matched per face: all of them, in practice


@dataclass(frozen=True)
class Erased:
    person: Person
    embeddings: int
    photos: int
    sightings: int  # named as this person
    unknown_sightings: int  # unknown, but their face matches this person above the threshold
    snapshots: int

    def counts(self) -> dict:
        return {"embeddings": self.embeddings, "photos": self.photos, "sightings": self.sightings,
                "unknown_sightings": self.unknown_sightings, "snapshots": self.snapshots}

    def lines(self) -> list[str]:
        p = self.person
        return [f"removed {p.name} (id {p.person_id}, {self.embeddings} embedding(s))", erased_line(self.counts())]


def erased_line(counts: dict) -> str:
    """What an erase took with the person, as ``people remove`` prints it."""
    return (f"  and {counts.get('photos', 0)} photo(s), {counts.get('sightings', 0)} sighting(s), "
            f"{counts.get('unknown_sightings', 0)} unknown sighting(s) of their face, "
            f"{counts.get('snapshots', 0)} snapshot(s)")


def erase_in_library(gallery: Gallery, settings, person_id: str) -> dict:
    """The face library's remove (app/library/owner.py): the erase, with the sightings of these settings; counts."""
    from app.gallery.sightings import sightings_from_settings

    with sightings_from_settings(settings) as store:
        return erase_person(gallery, store, person_id, settings.match_threshold, by_id=True).counts()


def person_vectors(gallery: Gallery, person_id: str) -> list[tuple[str, dict, np.ndarray]]:
    """(id, payload, vector) of a person's enrolled embeddings, from whichever engine holds them."""
    from app.gallery.edge import EdgeGallery

    if isinstance(gallery, EdgeGallery):
        import qdrant_edge as qe

        from app.gallery.edge import _person
        from app.gallery.sightings_edge import _vector

        out, offset = [], None
        while True:
            records, offset = gallery.shard.scroll(qe.ScrollRequest(offset=offset, limit=1000,
                                                                    filter=_person(person_id), with_payload=True,
                                                                    with_vector=True))
            out += [(str(r.id), r.payload or {}, _vector(r.vector)) for r in records]
            if offset is None or not records:
                return out
    from app.gallery.server import ServerGallery, _person

    if not isinstance(gallery, ServerGallery):
        raise TypeError(f"no way to read the vectors of {type(gallery).__name__}")
    out, offset = [], None
    while True:
        records, offset = gallery._call(gallery.client.scroll, gallery.collection, scroll_filter=_person(person_id),
                                        limit=1000, offset=offset, with_payload=True, with_vectors=True)
        for r in records:
            v = r.vector.get("") if isinstance(r.vector, dict) else r.vector
            out.append((str(r.id), r.payload or {}, np.asarray(v, np.float32)))
        if offset is None or not records:
            return out


def erase_person(gallery: Gallery, store: SightingStore | None, who: str, threshold: float,
                 by_id: bool = False) -> Erased:
    """Remove the person called ``who`` (or with id ``who``) and everything kept of them; the counts of what went.

    ``threshold`` (MATCH_THRESHOLD) decides which unknown sightings are theirs: any whose face scores at least that
    against one of their enrolled embeddings or their named sightings' faces."""
    person = gallery.lookup(who, by_id)
    points = person_vectors(gallery, person.person_id)
    photos = {str(p.get("photo")) for _, p, _ in points if p.get("photo")}
    named: list[str] = []
    unknown: set[str] = set()
    if store is not None:
        with _turn(store):
            faces = [v for _, _, v in points if v is not None]
            named_vectors = store.vectors(Where(person_id=person.person_id))
            named = [i for i, _ in named_vectors]
            faces += [v for _, v in named_vectors]
            for v in faces:
                unknown |= {h.id for h in store.search(v, Where(unknown_only=True), _SEARCH_LIMIT, threshold)}
            snapshots = store.delete(named + sorted(unknown))
    else:
        snapshots = 0
    gallery.remove(person.person_id, by_id=True)
    gone = 0
    if gallery.photos is not None and photos:
        still = {str(p.get("photo")) for _, p in gallery.points() if p.get("photo")}
        for name in photos - still:
            path = gallery.photos.path(name)
            if path is not None:
                path.unlink(missing_ok=True)
                gone += 1
    return Erased(person, len(points), gone, len(named), len(unknown), snapshots)


def _turn(store: SightingStore):
    """One turn on the embedded store for the whole erase (a server needs none)."""
    import contextlib

    hold = getattr(store, "hold", None)
    return hold() if hold is not None else contextlib.nullcontext()
