"""`/metrics` on METRICS_PORT, served by the parent process while a run has no web server of its own.

Loopback only, unless API_TOKEN is set (the web server's rule): then it listens on every interface and asks
for ``Authorization: Bearer <API_TOKEN>``. It attaches its own view of the metrics block (read-only use), so
the pipeline unlinking the block at the end never pulls memory from under a request being answered.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from app.errors import FacestreamError
from app.runtime.metrics import Metrics, MetricsSpec
from app.settings import Settings

log = logging.getLogger("facestream.metrics")


def bind_host(settings: Settings) -> tuple[str, str]:
    """(host, token): loopback without API_TOKEN, every interface with it."""
    token = str(getattr(settings, "api_token", "") or "")
    return ("0.0.0.0" if token else "127.0.0.1"), token


class MetricsServer:
    """``spec`` says which metrics block to read (None until the pipeline has created it: answered 503)."""

    def __init__(self, port: int, spec: Callable[[], MetricsSpec | None], host: str = "127.0.0.1",
                 token: str = "") -> None:
        self.spec, self.token = spec, token
        self._metrics: Metrics | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path.split("?")[0] != "/metrics":
                    return self._answer(404, b"only /metrics here\n", "text/plain")
                if server.token and not hmac.compare_digest(self.headers.get("Authorization", ""),
                                                            f"Bearer {server.token}"):
                    return self._answer(401, b"send Authorization: Bearer <API_TOKEN>\n", "text/plain")
                body = server.render()
                if body is None:
                    return self._answer(503, b"the pipeline is not running\n", "text/plain")
                self._answer(200, *body)

            def _answer(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass  # a scrape every few seconds is not news

        try:
            self.http = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise FacestreamError(f"METRICS_PORT={port}: cannot listen on {host}:{port} ({exc.strerror}): choose "
                                  "a free port, or 0 for no metrics server") from None
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        self._thread = threading.Thread(target=self.http.serve_forever, name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("Prometheus metrics on http://%s:%d/metrics", self.http.server_address[0], self.port)
        return self

    def render(self) -> tuple[bytes, str] | None:
        from app.observe.prom import render_metrics

        with self._lock:
            spec = self.spec()
            if self._metrics is None or (spec is not None and spec.name != self._metrics.spec.name):
                if spec is None:
                    return None
                self._release()
                self._metrics = Metrics.attach(spec)
            return render_metrics(self._metrics)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        with self._lock:
            self._release()

    def _release(self) -> None:
        if self._metrics is not None:
            with contextlib.suppress(Exception):
                self._metrics.close()
            self._metrics = None


def serve_metrics(settings: Settings, spec: Callable[[], MetricsSpec | None]) -> MetricsServer | None:
    """The server for METRICS_PORT, started; None when METRICS_PORT is 0 or a web server serves /metrics."""
    if not settings.metrics_port or getattr(settings, "web_port", 0):
        return None
    host, token = bind_host(settings)
    return MetricsServer(settings.metrics_port, spec, host, token).start()
