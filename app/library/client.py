"""The face library as callers see it: the same operations whether the pipeline's owner answers over the
control socket (``RemoteLibrary``) or no pipeline runs and the gallery is opened here (``LocalLibrary``).

Both send every operation to a ``GalleryOwner`` by name (over the socket, or in-process), so they cannot
drift apart; only the photo embedding happens here, in the caller's process (see ``app.library.photos``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from app.gallery.records import Match
from app.library.photos import PhotoEmbedder, decode_photo
from app.library.views import EnrolView, PersonView, TrackView

Call = Callable[..., Any]  # call(op, **args) -> result


class OwnerLibrary:
    """``Library`` over a call to an owner; see ``app.library.Library`` for each operation's contract."""

    running = False

    def __init__(self, settings, call: Call, embedder: PhotoEmbedder | None = None) -> None:
        self.settings = settings
        self.call = call
        self.embedder = embedder or PhotoEmbedder(settings)

    def people(self) -> list[PersonView]:
        return [PersonView.from_dict(d) for d in self.call("people")]

    def person(self, person_id: str) -> PersonView:
        return PersonView.from_dict(self.call("person", person_id=person_id))

    def lookup(self, who: str, by_id: bool = False) -> PersonView:
        """The person with display name ``who`` (any case) or id ``who``; unknown: UnknownPerson naming the
        closest."""
        return PersonView.from_dict(self.call("lookup", who=who, by_id=by_id))

    def _before_enrol(self) -> None:
        """Hook: the local library ties the gallery to the embedder before the first enrolment."""

    def enrol_photos(self, name: str | None, photos: Sequence[tuple[str, bytes]], person_id: str | None = None,
                     largest: bool = False) -> EnrolView:
        photos = [(str(f), bytes(b)) for f, b in photos]
        embeddings = self.embedder.embed(photos, largest=largest)
        self._before_enrol()
        return EnrolView.from_dict(self.call("add", name=name, embeddings=embeddings, person_id=person_id,
                                             photos=photos, new=True))

    def rename(self, person_id: str, name: str) -> PersonView:
        return PersonView.from_dict(self.call("rename", person_id=person_id, name=name))

    def merge(self, person_id: str, into_id: str) -> PersonView:
        return PersonView.from_dict(self.call("merge", person_id=person_id, into_id=into_id))

    def remove(self, person_id: str) -> PersonView:
        return PersonView.from_dict(self.call("remove", person_id=person_id))

    def remove_photo(self, person_id: str, photo_id: str) -> PersonView:
        return PersonView.from_dict(self.call("remove_photo", person_id=person_id, photo_id=photo_id))

    def photo(self, person_id: str, photo_id: str) -> bytes:
        return bytes(self.call("photo", person_id=person_id, photo_id=photo_id))

    def enrol_track(self, stream: int, track_id: int, name: str | None = None, person_id: str | None = None,
                    photos: Sequence[tuple[str, bytes]] = ()) -> PersonView:
        crops = [(str(f), bytes(b)) for f, b in photos]
        for f, b in crops:
            decode_photo(f, b)  # a crop must be an image too
        return PersonView.from_dict(self.call("enrol_track", stream=int(stream), track_id=int(track_id), name=name,
                                              person_id=person_id, photos=crops))

    def correct_track(self, stream: int, track_id: int, not_person_id: str) -> dict:
        return self.call("correct_track", stream=int(stream), track_id=int(track_id), not_person_id=not_person_id)

    def tracks(self) -> list[TrackView]:
        return [TrackView.from_dict(d) for d in self.call("tracks")]

    def search(self, embeddings: np.ndarray) -> list[Match | None]:
        x = np.asarray(embeddings, np.float32)
        rows = self.call("search", embeddings=x.reshape(-1, x.shape[-1]) if x.size else x.reshape(0, 512), k=1)
        return [Match(**r[0]) if r else None for r in rows]

    def status(self) -> dict:
        return dict(self.call("status"))

    def close(self) -> None:
        """Nothing held here (the local library releases the gallery)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RemoteLibrary(OwnerLibrary):
    """The running pipeline's library, over its control socket."""

    running = True

    def __init__(self, settings, client, embedder: PhotoEmbedder | None = None) -> None:
        super().__init__(settings, client.call, embedder)
        self.client = client


class LocalLibrary(OwnerLibrary):
    """No pipeline runs: the gallery opened in this process (its folder lock keeps a pipeline from starting
    until ``close``)."""

    def __init__(self, settings, gallery=None, embedder: PhotoEmbedder | None = None) -> None:
        from app.library.owner import GalleryOwner
        from app.stages.identify import gallery_from_settings

        self.gallery = gallery if gallery is not None else _opened(lambda: gallery_from_settings(settings,
                                                                                            check_embedder=False))
        self.owner = GalleryOwner(self.gallery, settings)
        self._bound = False
        super().__init__(settings, lambda op, **args: self.owner.handle(op, args), embedder)

    def _before_enrol(self) -> None:
        if not self._bound:  # a gallery filled by another model is refused before anything is written
            from app.stages.identify import embedder_of

            _opened(lambda: self.gallery.bind_embedder(embedder_of(self.settings)))
            self._bound = True

    def close(self) -> None:
        self.gallery.close()


def _opened(fn):
    """``fn()``, a gallery error raised as the library's (GalleryBusy is left for ``open_library`` to wait on)."""
    from app.gallery.records import GalleryBusy
    from app.library.errors import translated

    try:
        return fn()
    except GalleryBusy:
        raise
    except Exception as exc:
        ours = translated(exc)
        if ours is None or ours is exc:
            raise
        raise ours from None
