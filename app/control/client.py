"""The control channel's client: one connection per request, a deadline for the reply."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from app.control import protocol
from app.library.errors import GalleryUnavailable, error_of

DEFAULT_TIMEOUT = 30.0  # seconds: an enrolment of many photos is stored in well under this


class NoOwner(Exception):
    """Nothing answers on the socket (no pipeline runs, or it died): the caller may open the gallery itself."""


class ControlClient:
    def __init__(self, path: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = Path(path)
        self.timeout = timeout

    def call(self, op: str, **args: Any) -> Any:
        """Send one request and return its result; a refusal is raised as its LibraryError."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(str(self.path))
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise NoOwner(str(exc)) from None
            try:
                protocol.send(sock, {"op": op, "args": args})
                reply = protocol.recv(sock)
            except TimeoutError:
                raise GalleryUnavailable(
                    f"the running pipeline did not answer {op} within {self.timeout:.0f} s on {self.path}: it may be "
                    "overloaded or stuck; try again, or stop it and retry") from None
            except (OSError, protocol.ProtocolError) as exc:
                raise GalleryUnavailable(f"the running pipeline's control socket {self.path} failed during {op}: "
                                         f"{exc}; is the pipeline stopping? try again") from None
        finally:
            sock.close()
        if reply is None:
            raise GalleryUnavailable(f"the running pipeline closed {self.path} without answering {op}; "
                                     "is it stopping? try again")
        if not reply.get("ok"):
            raise error_of(str(reply.get("error", "")), str(reply.get("message", "the request was refused")))
        return reply.get("result")
