"""The web app's server: uvicorn in a daemon thread of the display process, on a socket bound up front (a busy
port or a refused address is one clear error before the pipeline runs on)."""

from __future__ import annotations

import logging
import socket
import threading
import time

from app.errors import FacestreamError
from app.settings import Settings
from app.web.bind import check_bind, is_loopback
from app.web.library_access import LibraryAccess
from app.web.live import LiveView

log = logging.getLogger("facestream.web")


def parse_serve(value: str) -> tuple[str | None, int]:
    """``--serve [HOST:]PORT`` → (host or None for SERVE_HOST, port); ``[::1]:8080`` for IPv6."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise ValueError(f"--serve {value!r}: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080")
    return host or None, number


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FacestreamError(f"cannot serve the web app on {host}:{port} ({exc.strerror}): choose another "
                              "--serve port") from exc
    sock.listen(64)
    sock.set_inheritable(False)
    return sock


class WebServer:
    """Serves ``live`` (fed by the display) and the library's API until ``close``."""

    def __init__(self, settings: Settings, port: int, host: str, streams: dict[int, str],
                 library: LibraryAccess | None = None) -> None:
        import uvicorn

        from app.web.app import create_app

        check_bind(host, port, settings.api_token)
        self.live = LiveView(streams)
        self.library = library or LibraryAccess(settings)
        self.sock = bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.host = host
        app = create_app(settings, self.live, self.library)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1, log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="web",
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            self.close()
            raise FacestreamError(f"the web app did not start on {host}:{self.port}: run with --debug for the cause")
        shown = host if is_loopback(host) or ":" not in host else f"[{host}]"
        log.info("web app on http://%s:%d/ (API docs: /api/docs)%s", shown, self.port,
                 ", token required" if settings.api_token else "")

    def close(self) -> None:
        self.live.close()
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()
        self.library.close()
