"""The control channel's server: a thread in the gallery owner's process answering one request at a time per
connection on a Unix-domain socket.

The socket is made under a temporary name, set to mode 0600 and renamed into place, so no other user can ever
connect; a connecting process of another user is refused by its credentials too (SO_PEERCRED). A socket file
left by a dead owner is replaced; one whose owner still answers (two pipelines on one Qdrant server sharing
QDRANT_PATH) is left alone and this process serves nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.control import protocol
from app.errors import FacestreamError

log = logging.getLogger("facestream.control")

Handler = Callable[[str, dict], Any]  # (op, args) -> result; raises a LibraryError for a refusal


def answers(path: Path, timeout: float = 1.0) -> bool:
    """Whether a live server listens on ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def _peer_uid(conn: socket.socket) -> int | None:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):  # not Linux: the 0600 mode alone keeps others out
        return None
    return struct.unpack("3i", creds)[1]


class ControlServer:
    """Serves ``handler`` on ``path`` from daemon threads until ``stop()``."""

    def __init__(self, path: str | os.PathLike, handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._inode: int | None = None

    def start(self) -> bool:
        """Listen; False (and a warning) when another live owner already serves this path."""
        if self.path.exists() or self.path.is_symlink():
            if answers(self.path):
                log.warning("control: another process already serves %s: this pipeline takes no requests", self.path)
                return False
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # a dead owner's socket
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(tmp))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
            sock.listen(16)
            sock.settimeout(0.25)  # accept wakes up to see a stop
        except OSError as exc:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise FacestreamError(f"cannot serve the control socket {self.path}: {exc}") from None
        self._inode = self.path.stat().st_ino
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="control", daemon=True)
        self._thread.start()
        log.info("control: serving the face library on %s", self.path)
        return True

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            uid = _peer_uid(conn)
            if uid is not None and uid != os.getuid():
                log.warning("control: refused a connection from uid %d", uid)
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), name="control-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(None)
            while not self._stopping.is_set():
                try:
                    request = protocol.recv(conn)
                except (protocol.ProtocolError, OSError) as exc:
                    with contextlib.suppress(OSError, protocol.ProtocolError):
                        protocol.send(conn, {"ok": False, "error": "bad_request", "message": str(exc)})
                    return
                if request is None:
                    return
                reply = self._reply(request)
                try:
                    protocol.send(conn, reply)
                except protocol.ProtocolError as exc:  # a reply too large to send: say so instead
                    protocol.send(conn, {"ok": False, "error": "bad_request", "message": str(exc)})
                except OSError:
                    return

    def _reply(self, request: dict) -> dict:
        op, args = request.get("op"), request.get("args") or {}
        if not isinstance(op, str) or not isinstance(args, dict):
            return {"ok": False, "error": "bad_request", "message": "a request needs an op name and an args object"}
        try:
            return {"ok": True, "result": self.handler(op, args)}
        except FacestreamError as exc:
            return {"ok": False, "error": getattr(exc, "kind", "bad_request"), "message": str(exc)}
        except Exception as exc:  # a bug: the client gets one line, the owner's log the traceback
            log.exception("control: %s failed", op)
            return {"ok": False, "error": "internal", "message": f"{op} failed in the pipeline: "
                                                                 f"{type(exc).__name__}: {exc}"}

    def stop(self) -> None:
        """Stop accepting, and remove the socket file if it is still ours."""
        self._stopping.set()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._thread is not None:
            self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._inode = None
