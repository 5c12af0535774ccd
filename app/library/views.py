"""What the face library returns: plain dataclasses that travel as JSON over the control channel."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class PhotoView:
    """One kept photo of a person: ``id`` is its name in the photo store (sha256 + extension), ``filename`` the
    name it was enrolled under (an upload's name, a photo's path, or ``track-…`` for a live crop)."""

    id: str
    filename: str
    embeddings: int = 1  # embeddings made from it (a live track's crops share the track's embeddings)


@dataclass(frozen=True)
class PersonView:
    """A person: stable ``id``, display ``name``, kept ``photos`` and the number of ``embeddings`` enrolled."""

    id: str
    name: str
    photos: list[PhotoView] = field(default_factory=list)
    embeddings: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PersonView:
        return cls(d["id"], d["name"], [PhotoView(**p) for p in d.get("photos", [])], int(d.get("embeddings", 0)))


@dataclass(frozen=True)
class EnrolView:
    """What one enrolment did: the person after it, embeddings ``added`` (new points), ``already`` enrolled for
    them, ``spooled`` (server unreachable: written when it answers), and ``taken``: (filename, name) of photos
    already enrolled as someone else, left as they are."""

    person: PersonView
    added: int = 0
    already: int = 0
    spooled: int = 0
    taken: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"person": self.person.to_dict(), "added": self.added, "already": self.already,
                "spooled": self.spooled, "taken": [list(t) for t in self.taken]}

    @classmethod
    def from_dict(cls, d: dict) -> EnrolView:
        return cls(PersonView.from_dict(d["person"]), int(d["added"]), int(d["already"]), int(d.get("spooled", 0)),
                   [(str(a), str(b)) for a, b in d.get("taken", [])])


@dataclass(frozen=True)
class TrackView:
    """A live (or recently ended) track as identify sees it: its current name or None, the vote's person id,
    similarity, nearest person when unknown, how many embeddings are kept for ``enrol_track``, and whether it
    has ended (``ended_at``: wall-clock seconds, 0 while live)."""

    stream: int
    track_id: int
    name: str | None
    person_id: str | None
    score: float
    nearest: str | None
    embeddings: int
    last_seen: float
    ended_at: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrackView:
        return cls(**d)
