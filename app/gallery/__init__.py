"""The face gallery: one small interface (``Gallery``) over Qdrant, embedded (qdrant-edge) or a server."""

from __future__ import annotations

import os
from pathlib import Path

from app.gallery.base import (
    DIM,
    AddResult,
    Gallery,
    GalleryBusy,
    GalleryError,
    GalleryUnavailable,
    Match,
    Person,
)

__all__ = ["DIM", "AddResult", "Gallery", "GalleryBusy", "GalleryError", "GalleryUnavailable", "Match", "Person",
           "open_gallery"]


def open_gallery(url: str | None, path: str | os.PathLike, collection: str, api_key: str | None = None,
                 prefer_grpc: bool = False, dim: int = DIM) -> Gallery:
    """The embedded gallery in ``path/collection``, or collection ``collection`` on the server at ``url``.

    With a server, enrolments made while it is unreachable wait in ``path/spool/<collection>``.
    """
    if url:
        from app.gallery.server import ServerGallery

        return ServerGallery(collection, dim, url=url, api_key=api_key, prefer_grpc=prefer_grpc,
                             spool_dir=Path(path) / "spool" / collection)
    from app.gallery.edge import EdgeGallery

    return EdgeGallery(path, collection, dim)
