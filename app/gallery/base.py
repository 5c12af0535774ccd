"""The gallery interface the project owns, and the rules both Qdrant adapters share.

A person is a stable ``person_id`` and a display name; display names are unique regardless of case. One point per
enrolled embedding; the payload holds ``person_id``, ``name`` (as typed), ``name_key`` (case-folded, indexed),
``source``, ``created`` and, for a photo, ``photo`` (its name in the photo store beside the gallery).
A point's id is uuid5 of its content key (the photo's bytes when the source is a file, else the embedding's
bytes), so a photo is enrolled once whatever its person is called now. Galleries written before this used
uuid5 of person id + key: those ids are still recognised for the same person.

One reserved point (``kind: meta``, excluded from every search, listing and count) records the embedder that
filled the gallery: a gallery searched with another model's embeddings gives wrong names, so a mismatch is
refused (``facestream people reembed`` rebuilds it). The adapters implement a handful of storage primitives;
everything about people lives here once.
"""

from __future__ import annotations

import difflib
import logging
import time
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from app.gallery.records import (
    DIM,
    META_ID,
    META_KEY,
    META_VALUE,
    AddResult,
    Embedder,
    EmbedderMismatch,
    GalleryError,
    Match,
    Person,
    Prepared,
    UnknownPerson,
    as_embeddings,
    legacy_point_id,
    photo_key,
    point_id,
    prepare,
    slug,
)

log = logging.getLogger(__name__)

class Gallery(ABC):
    """Enrolled people as Qdrant points; the same behaviour whichever engine stores them."""

    dim: int = DIM
    where: str = ""  # human-readable location for messages (never holds a secret)
    embedder: Embedder | None = None  # checked against the gallery's record when set
    photos = None  # PhotoStore keeping enrolment photos, or None
    outage = None  # Outage of a server connection; None for the embedded engine

    # -- storage primitives, one set per adapter (none of them sees the embedder record but _retrieve) ----------
    @abstractmethod
    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None: ...

    @abstractmethod
    def _retrieve(self, ids: list[str]) -> dict[str, dict]:
        """Payloads of the points among ``ids`` that exist, by id."""

    @abstractmethod
    def _query(self, vectors: np.ndarray, limit: int, threshold: float) -> list[list[tuple[float, dict]]]:
        """One engine call for the whole batch: per row, (score, payload) best first, >= threshold."""

    @abstractmethod
    def _scroll(self, person_id: str | None = None, name_key: str | None = None,
                limit: int | None = None, full: bool = False) -> Iterator[tuple[str, dict]]:
        """(id, payload) of the points matching the optional filters; payload (person_id, name), or all with full."""

    @abstractmethod
    def _count(self, person_id: str | None = None) -> int: ...

    @abstractmethod
    def _set_payload(self, person_id: str, payload: dict) -> None: ...

    @abstractmethod
    def _delete_person(self, person_id: str) -> None: ...

    @abstractmethod
    def _delete_ids(self, ids: list[str]) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- the embedder record --------------------------------------------------------------------
    def stored_embedder(self) -> Embedder | None:
        rec = self._retrieve([META_ID]).get(META_ID)
        return None if rec is None else Embedder(str(rec.get("embedder", "")), str(rec.get("embedder_sha256", "")))

    def set_embedder(self, embedder: Embedder) -> None:
        vector = np.zeros((1, self.dim), np.float32)
        vector[0, 0] = 1.0  # cosine needs a non-zero vector; the point is filtered out of every search
        self._upsert([META_ID], vector, [{META_KEY: META_VALUE, "embedder": embedder.model,
                                          "embedder_sha256": embedder.sha256}])

    def bind_embedder(self, embedder: Embedder) -> None:
        """Tie an already open gallery to ``embedder`` (EmbedderMismatch if another model filled it)."""
        self.embedder = embedder
        self._bind_embedder()

    def _bind_embedder(self) -> None:
        """Refuse a gallery filled by another model; record ours in a new gallery (or one from before records)."""
        if self.embedder is None:
            return
        stored = self.stored_embedder()
        if stored is None:
            if self._count():
                log.warning("gallery: %s has no record of the model that filled it: taking it as %s (if it was "
                            "another, run `facestream people reembed`)", self.where, self.embedder.model)
            self.set_embedder(self.embedder)
        elif stored != self.embedder:
            raise EmbedderMismatch(
                f"the gallery {self.where} was filled by {stored} but EMBEDDER_MODEL is {self.embedder}: its names "
                f"would be wrong; run `facestream people reembed` to rebuild it for {self.embedder.model}, or set "
                f"EMBEDDER_MODEL={stored.model}")

    # -- the interface ------------------------------------------------------------------------
    def add(self, name: str, embeddings: np.ndarray, person_id: str | None = None,
            source: Sequence[str] | None = None, filenames: Sequence[str] | None = None) -> AddResult:
        """Enrol embeddings (N, dim) of one person; points already there (same photo/embedding) are kept as they are.

        Without ``person_id``, the person already called ``name`` (in any case; the stored spelling stays)
        gets the new embeddings, or a new person id (a slug of the name) is made. With a ``person_id``
        whose stored name differs, the person is renamed to ``name`` so that one person has one name.
        """
        name = _clean_name(name)
        return self._write(name, person_id, prepare(embeddings, self.dim, source, filenames))

    def _write(self, name: str, person_id: str | None, prep: Prepared) -> AddResult:
        holder = self._holder(name)
        if person_id is not None and holder not in (None, person_id):
            raise _name_taken(name, holder)
        person_id = person_id or holder or self._new_person_id(name)
        current = next(self._scroll(person_id=person_id, limit=1), None)
        if current is not None:
            stored = str(current[1].get("name", ""))
            if name_key(stored) == name_key(name):
                name = stored  # the same name typed in another case: the stored spelling stays until a rename
            else:
                self._set_payload(person_id, {"name": name, "name_key": name_key(name)})
        ids = [point_id(k) for k in prep.keys]
        legacy = [legacy_point_id(person_id, k) for k in prep.keys]
        found = self._retrieve(ids + legacy) if ids else {}
        new, already, taken = [], 0, []
        for i, (pid, old) in enumerate(zip(ids, legacy)):
            owner = found.get(pid) or found.get(old)
            if owner is None:
                new.append(i)
            elif owner.get("person_id") == person_id:
                already += 1
            else:
                taken.append((prep.sources[i] or prep.keys[i], str(owner.get("name", ""))))
        if new:
            created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            photos = self.keep_photos(prep)
            payloads = []
            for i in new:
                payload = {"person_id": person_id, "name": name, "name_key": name_key(name),
                           "source": prep.sources[i], "created": created}
                if photos[i]:
                    payload["photo"] = photos[i]
                if prep.filenames and prep.filenames[i]:
                    payload["filename"] = prep.filenames[i]
                payloads.append(payload)
            self._upsert([ids[i] for i in new], prep.vectors[new], payloads)
        return AddResult(person_id=person_id, name=name, ids=tuple(ids), written=len(new), already=already,
                         taken=tuple(taken))

    def keep_photos(self, prep: Prepared) -> list[str | None]:
        """Copy each row's source photo into the photo store (before any point names it); its name there per row."""
        out: list[str | None] = []
        for key, src in zip(prep.keys, prep.sources):
            digest = key[5:].split("#")[0] if key.startswith("file:") else None
            name = None
            if self.photos is not None and digest and src:
                try:
                    name = self.photos.put(src, digest)
                except FileNotFoundError:  # a spooled enrolment whose photo has gone since: enrolled without it
                    log.warning("gallery: %s is gone: enrolled without keeping the photo", src)
            out.append(name)
        return out

    def photo_owner(self, photo: str | Path, person_id: str | None = None) -> Match | None:
        """The person this photo (by its bytes) is already enrolled as, or None (score 1: the very same photo)."""
        key = photo_key(photo)
        return None if key is None else self.owner_of_key(key, person_id)

    def owner_of_key(self, key: str, person_id: str | None = None) -> Match | None:
        """The person a content key (``file:<sha256>``) is already enrolled as, or None."""
        ids = [point_id(key)] + ([legacy_point_id(person_id, key)] if person_id else [])
        found = self._retrieve(ids)
        hit = next((found[i] for i in ids if i in found), None)
        return None if hit is None else _match(1.0, hit)

    def search(self, embeddings: np.ndarray, threshold: float) -> list[Match | None]:
        """Best match per row of (N, dim) in one engine call; None where no point scores >= threshold."""
        x = as_embeddings(embeddings, self.dim) if len(embeddings) else np.zeros((0, self.dim), np.float32)
        if not len(x):
            return []
        out: list[Match | None] = []
        for hits in self._query(x, 1, float(threshold)):
            hit = next(((s, p) for s, p in hits if s >= threshold), None)
            out.append(None if hit is None else _match(*hit))
        return out

    def search_top(self, embeddings: np.ndarray, threshold: float, k: int = 3) -> list[list[Match]]:
        """Up to ``k`` distinct people per row, best first (for voting or showing runners-up)."""
        x = as_embeddings(embeddings, self.dim) if len(embeddings) else np.zeros((0, self.dim), np.float32)
        if not len(x):
            return []
        out = []
        for hits in self._query(x, max(1, k) * 4, float(threshold)):
            best: dict[str, Match] = {}
            for s, p in hits:
                if s >= threshold and p.get("person_id") not in best:
                    best[p.get("person_id")] = _match(s, p)
            out.append(list(best.values())[:k])
        return out

    def people(self) -> list[Person]:
        """Everyone enrolled with their number of embeddings, sorted by name."""
        return _group(p for _, p in self._scroll())

    def person(self, person_id: str) -> Person | None:
        """The person with this id, or None."""
        found = _group(p for _, p in self._scroll(person_id=person_id))
        return found[0] if found else None

    def find(self, name: str) -> list[Person]:
        """Everyone called ``name`` in any case: one person, none, or (a damaged gallery) several."""
        return _group(p for _, p in self._scroll(name_key=name_key(name)))

    def person_id_of_name(self, name: str) -> str | None:
        """The person called ``name``, whatever its case, or None."""
        hit = next(self._scroll(name_key=name_key(name), limit=1), None)
        return None if hit is None else hit[1].get("person_id")

    def lookup(self, who: str, by_id: bool = False) -> Person:
        """The person with display name ``who`` (any case), or with person id ``who`` when ``by_id``.

        Unknown or ambiguous: UnknownPerson / GalleryError naming the closest people; nothing is guessed."""
        who = (who or "").strip()
        found: list[Person] = []
        if who and by_id:
            person = self.person(who)
            found = [person] if person else []
        elif who:
            found = self.find(who)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            listed = ", ".join(f"{p.name} (id {p.person_id})" for p in found)
            raise GalleryError(f"{who!r} is the name of {len(found)} people: {listed}; use --id with one of those ids")
        raise UnknownPerson(_unknown(who, by_id, self.people()))

    def rename(self, who: str, new_name: str, by_id: bool = False) -> Person:
        """Give the person called ``who`` (or with id ``who``) a new display name; returns them as renamed."""
        new_name = _clean_name(new_name)
        person = self.lookup(who, by_id)
        holder = self._holder(new_name)
        if holder not in (None, person.person_id):
            raise _name_taken(new_name, holder)
        self._set_payload(person.person_id, {"name": new_name, "name_key": name_key(new_name)})
        return Person(person.person_id, new_name, person.embeddings)

    def remove(self, who: str, by_id: bool = False) -> Person:
        """Delete the person called ``who`` (or with id ``who``) and all their embeddings; returns who went."""
        person = self.lookup(who, by_id)
        self._delete_person(person.person_id)
        return person

    def merge(self, person_id: str, into_id: str) -> Person:
        """Move every embedding of ``person_id`` to ``into_id`` (who keeps their name); returns ``into_id`` after."""
        into = self.lookup(into_id, by_id=True)
        gone = self.lookup(person_id, by_id=True)
        if gone.person_id == into.person_id:
            raise GalleryError(f"cannot merge {into.name} (id {into.person_id}) into themself")
        self._move(gone.person_id, {"person_id": into.person_id, "name": into.name, "name_key": name_key(into.name)})
        return Person(into.person_id, into.name, into.embeddings + gone.embeddings)

    def _move(self, person_id: str, payload: dict) -> None:
        """Overwrite these payload fields on every point of ``person_id`` (person id included)."""
        self._set_payload(person_id, payload)

    def photo_points(self, person_id: str, photo: str) -> list[str]:
        """Ids of the person's points made from the kept photo called ``photo``."""
        return [i for i, p in self._scroll(person_id=person_id, full=True) if p.get("photo") == photo]

    def points_of(self, person_id: str | None = None) -> Iterator[tuple[str, dict]]:
        """(id, full payload) of one person's embeddings (everyone's with None)."""
        return self._scroll(person_id=person_id, full=True)

    def points(self) -> Iterator[tuple[str, dict]]:
        """(id, full payload) of every enrolled embedding (not the embedder record)."""
        return self._scroll(full=True)

    def replace_vectors(self, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None:
        """Overwrite existing points (re-embedding): same ids, new vectors and payloads."""
        self._upsert(list(ids), as_embeddings(vectors, self.dim) if len(ids) else vectors, list(payloads))

    def delete_points(self, ids: list[str]) -> None:
        if ids:
            self._delete_ids(list(ids))

    def flush(self) -> None:
        """Make what was written durable (the embedded shard syncs to disk); a server persists by itself."""

    def count(self) -> int:
        """Number of points (embeddings) in the gallery."""
        return self._count()

    def _holder(self, name: str) -> str | None:
        """The person id holding this display name; several (a damaged gallery) is an error naming them."""
        found = self.find(name)
        if len(found) > 1:
            raise GalleryError(f"{name!r} is the name of {len(found)} people "
                               f"({', '.join(p.person_id for p in found)}): rename all but one with --id")
        return found[0].person_id if found else None

    def _new_person_id(self, name: str) -> str:
        base = slug(name)
        pid, n = base, 1
        while self._count(person_id=pid):  # the slug is taken by someone since renamed
            n += 1
            pid = f"{base}-{n}"
        return pid

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def name_key(name: str) -> str:
    """What makes two names the same name: Unicode-normalised, case-folded, inner spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def _group(payloads: Iterable[dict]) -> list[Person]:
    found: dict[str, list] = {}
    for p in payloads:
        entry = found.setdefault(str(p.get("person_id", "")), [str(p.get("name", "")), 0])
        entry[1] += 1
    people = (Person(pid, n, c) for pid, (n, c) in found.items())
    return sorted(people, key=lambda p: (p.name.casefold(), p.person_id))


def closest(who: str, people: list[Person], by_id: bool = False, n: int = 5) -> list[Person]:
    """The ``n`` people whose name (or id) reads most like ``who``, best first."""
    key = name_key(who)

    def score(p: Person) -> float:
        text = name_key(p.person_id if by_id else p.name)
        return difflib.SequenceMatcher(None, key, text).ratio() + (0.5 if key and key in text else 0.0)

    return sorted(people, key=score, reverse=True)[:n]


def _unknown(who: str, by_id: bool, people: list[Person]) -> str:
    what = "with id" if by_id else "called"
    if not people:
        return f"no one {what} {who!r}: the gallery is empty (facestream enrol NAME PHOTO…)"
    near = closest(who, people, by_id)
    listed = ", ".join(f"{p.name} (id {p.person_id})" for p in near)
    hint = ""
    if not by_id and any(p.person_id == who for p in people):
        hint = f"; {who!r} is a person id: add --id to mean that person"
    return f"no one {what} {who!r} in the gallery; closest: {listed}{hint}"


def _name_taken(name: str, holder: str) -> GalleryError:
    return GalleryError(f"{name!r} is already the name of person {holder}: remove or rename that person first")


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise GalleryError("a person needs a non-empty name")
    return name


def _match(score: float, payload: dict) -> Match:
    return Match(person_id=str(payload.get("person_id", "")), name=str(payload.get("name", "")),
                 score=float(min(1.0, max(-1.0, score))))


def batched(items: Sequence, size: int) -> Iterable[slice]:
    for start in range(0, len(items), size):
        yield slice(start, min(len(items), start + size))
