"""The running pipeline's side: serve the face library from the identify process (its one hook)."""

from __future__ import annotations

import logging

from app.control.server import ControlServer
from app.library import socket_path
from app.library.owner import GalleryOwner

log = logging.getLogger("facestream.library")


def serve_library(identify, settings) -> ControlServer | None:
    """Start answering library requests for ``identify``'s gallery on the control socket; None when another
    live process already serves that socket (it keeps it)."""
    owner = GalleryOwner(identify.gallery, settings, live=identify, lock=identify.lock)
    server = ControlServer(socket_path(settings), owner.handle)
    owner.socket = str(server.path)
    return server if server.start() else None
