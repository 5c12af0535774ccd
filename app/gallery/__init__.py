"""The face gallery: one small interface (``Gallery``) over Qdrant, embedded (qdrant-edge) or a server."""

from __future__ import annotations

import os
from pathlib import Path

from app.gallery.base import Gallery
from app.gallery.records import (
    DIM,
    AddResult,
    Embedder,
    EmbedderMismatch,
    GalleryBusy,
    GalleryError,
    GalleryUnavailable,
    Match,
    Person,
    UnknownPerson,
)

__all__ = ["DIM", "AddResult", "Embedder", "EmbedderMismatch", "Gallery", "GalleryBusy", "GalleryError",
           "GalleryUnavailable", "Match", "Person", "UnknownPerson", "open_gallery", "photos_dir", "spool_dir"]


def spool_dir(path: str | os.PathLike, collection: str) -> Path:
    """Where enrolments wait while the server is unreachable."""
    return Path(path) / "spool" / collection


def photos_dir(path: str | os.PathLike) -> Path:
    """Where enrolment photos are kept (by content, shared by every collection under ``path``)."""
    return Path(path) / "photos"


def open_gallery(url: str | None, path: str | os.PathLike, collection: str, api_key: str | None = None,
                 prefer_grpc: bool = False, dim: int = DIM, embedder: Embedder | None = None,
                 keep_photos: bool = True, connect: bool = True) -> Gallery:
    """The embedded gallery in ``path/collection``, or collection ``collection`` on the server at ``url``.

    Enrolment photos are kept in ``path/photos`` (``keep_photos``); with a server, enrolments made while it is
    unreachable wait in ``path/spool/<collection>``. With ``embedder``, a gallery filled by another model is
    refused (EmbedderMismatch) and a new one records it. ``connect=False`` leaves a server unasked until
    ``connect()`` (start-up checks that must fail rather than spool).
    """
    photos = photos_dir(path) if keep_photos else None
    if url:
        from app.gallery.server import ServerGallery

        return ServerGallery(collection, dim, url=url, api_key=api_key, prefer_grpc=prefer_grpc,
                             spool_dir=spool_dir(path, collection), embedder=embedder, photos_dir=photos,
                             connect=connect)
    from app.gallery.edge import EdgeGallery

    return EdgeGallery(path, collection, dim, embedder=embedder, photos_dir=photos)
