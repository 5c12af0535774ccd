"""The running pipeline's side: serve the face library from the identify process (its one hook)."""

from __future__ import annotations

import logging

from app.control.server import ControlServer
from app.errors import FacestreamError
from app.library import socket_path
from app.library.owner import GalleryOwner

log = logging.getLogger("facestream.library")


def serve_library(identify, settings) -> ControlServer | None:
    """Start answering library requests for ``identify``'s gallery on the control socket; None when another
    live process already serves that socket (it keeps it)."""
    owner = GalleryOwner(identify.gallery, settings, live=identify, lock=identify.lock)
    server = ControlServer(socket_path(settings), owner.handle)
    owner.socket = str(server.path)
    try:
        return server if server.start() else None
    except FacestreamError as exc:  # recognising without a library beats not recognising at all
        log.warning("%s: the face library (enrol, people, the web app) cannot reach this pipeline", exc)
        return None
