"""The face library's errors: each one user-facing line, with the HTTP status a web layer maps it to.

Every ``Library`` method raises only these (or their subclasses), so the CLI prints one line and the REST API
answers ``status`` with the message. The gallery's own ``UnknownPerson`` / ``GalleryUnavailable`` are bases of
the ones here, so code catching the gallery's still catches them.
"""

from __future__ import annotations

from app.errors import FacestreamError
from app.gallery.records import GalleryUnavailable as _GalleryUnavailable
from app.gallery.records import UnknownPerson as _UnknownPerson


class LibraryError(FacestreamError):
    """A face-library request that could not be done; nothing was changed. ``status``: the HTTP status."""

    status = 400
    kind = "bad_request"  # the name sent over the control channel to rebuild the same error


class BadRequest(LibraryError):
    """The request itself is wrong (an empty name, a person merged into themself)."""

    status = 422
    kind = "bad_request"


class UnknownPerson(LibraryError, _UnknownPerson):
    status = 404
    kind = "unknown_person"


class UnknownPhoto(LibraryError):
    status = 404
    kind = "unknown_photo"


class DuplicateName(LibraryError):
    """A new person (or a rename) with a display name another person already has."""

    status = 409
    kind = "duplicate_name"


class BadPhoto(LibraryError):
    """A photo that is not an image, holds no face or several, or is too large; the message names the file."""

    status = 422
    kind = "bad_photo"


class NotRunning(LibraryError):
    """A live-track operation with no pipeline running."""

    status = 409
    kind = "not_running"


class UnknownTrack(LibraryError):
    status = 404
    kind = "unknown_track"


class WrongModel(LibraryError):
    """The gallery was filled by another embedding model (``facestream people reembed`` rebuilds it)."""

    status = 409
    kind = "wrong_model"


class GalleryUnavailable(LibraryError, _GalleryUnavailable):
    """The gallery cannot be reached: the Qdrant server is down, or the running pipeline did not answer."""

    status = 503
    kind = "gallery_unavailable"
    exit_code = 69


ERRORS: dict[str, type[LibraryError]] = {cls.kind: cls for cls in (
    BadRequest, UnknownPerson, UnknownPhoto, DuplicateName, BadPhoto, NotRunning, UnknownTrack, WrongModel,
    GalleryUnavailable)}


def translated(exc: Exception) -> LibraryError | None:
    """The library error for a gallery error (None for anything else): callers catch the library's only."""
    from app.gallery.records import EmbedderMismatch, GalleryError

    if isinstance(exc, LibraryError):
        return exc
    for gallery_error, ours in ((_UnknownPerson, UnknownPerson), (_GalleryUnavailable, GalleryUnavailable),
                                (EmbedderMismatch, WrongModel), (GalleryError, BadRequest), (ValueError, BadRequest)):
        if isinstance(exc, gallery_error):
            return ours(str(exc))
    return None


def error_of(kind: str, message: str) -> LibraryError:
    """The error a reply named (an unknown kind: a plain LibraryError with the message)."""
    return ERRORS.get(kind, LibraryError)(message)
