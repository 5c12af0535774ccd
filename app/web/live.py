"""What the display hands the web app: the latest picture per stream (and the grid) as JPEG, and the stats.

The display thread only copies a drawn frame (its shared-memory slot is reused) and only as often as someone
watches: every frame while a stream has a viewer, ``idle_fps`` otherwise (so a new viewer gets a picture at
once). An encoder thread turns the latest copy into JPEG when it is free, at most ``max_fps`` times a second
(OpenCV releases the GIL): a burst of frames costs the display a few copies, never an encode each, and a viewer
always gets the newest frame.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from app.web.recent import RecentFaces

GRID = "grid"  # the key of the mosaic of every stream (``/stream.mjpg`` with several streams)


class LiveView:
    def __init__(self, streams: dict[int, str], max_fps: float = 30.0, idle_fps: float = 1.0, quality: int = 80,
                 recent: RecentFaces | None = None) -> None:
        self.streams = dict(streams)
        self.max_fps, self.idle_fps, self.quality = max_fps, idle_fps, quality
        self.recent = recent or RecentFaces()
        self._cond = threading.Condition()
        self._jpegs: dict[int | str, tuple[int, bytes]] = {}
        self._next: dict[int | str, float] = {}
        self._viewers: dict[int | str, int] = {}
        self._pending: dict[int | str, np.ndarray] = {}  # the latest copy per key, not encoded yet
        self._work = threading.Condition()
        self._stats: dict = {"stages": [], "streams": self.streams_json(), "started": time.time()}
        self.closed = False
        self.table = None  # the pipeline's shared metrics block (app.runtime.metrics.Metrics), for GET /metrics
        self._encoder = threading.Thread(target=self._encode_loop, name="web-jpeg", daemon=True)
        self._encoder.start()

    def streams_json(self) -> list[dict]:
        return [{"stream": s, "name": n} for s, n in sorted(self.streams.items())]

    def wants(self, key: int | str) -> bool:
        """Whether a picture for ``key`` would be taken now (the caller may skip preparing it otherwise)."""
        return self._viewers.get(key, 0) > 0 or time.monotonic() >= self._next.get(key, 0.0)

    def publish(self, key: int | str, frame: np.ndarray | Callable[[], np.ndarray]) -> bool:
        """Take ``frame`` (or what the callable returns, only if due) as the latest picture of ``key``: copied
        here, encoded by the encoder thread."""
        if not self.wants(key):
            return False
        self._next[key] = time.monotonic() + 1.0 / self.idle_fps
        img = frame() if callable(frame) else frame
        with self._work:
            self._pending[key] = np.array(img, copy=True)
            self._work.notify()
        return True

    def _encode_loop(self) -> None:
        while True:
            with self._work:
                self._work.wait_for(lambda: self._pending or self.closed)
                if self.closed:
                    return
                pending, self._pending = self._pending, {}
            t0 = time.monotonic()
            for key, img in pending.items():
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if ok:
                    with self._cond:
                        version = self._jpegs.get(key, (0, b""))[0] + 1
                        self._jpegs[key] = (version, buf.tobytes())
                        self._cond.notify_all()
            # at most max_fps rounds a second: what arrives meanwhile replaces the pending copy (the newest wins)
            time.sleep(max(0.0, 1.0 / self.max_fps - (time.monotonic() - t0)))

    def picture(self, key: int | str) -> tuple[int, bytes | None]:
        version, jpeg = self._jpegs.get(key, (0, None))
        return version, jpeg

    def wait(self, key: int | str, after: int, timeout: float) -> tuple[int, bytes | None]:
        """The picture of ``key`` newer than version ``after``, waiting up to ``timeout`` s for one."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed or self._jpegs.get(key, (0, b""))[0] > after, timeout)
            return self.picture(key)

    @contextlib.contextmanager
    def watching(self, key: int | str) -> Iterator[None]:
        """Count a viewer of ``key`` while the block runs (pictures are then encoded at full rate)."""
        with self._cond:
            self._viewers[key] = self._viewers.get(key, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                self._viewers[key] -= 1

    def set_stats(self, stats: list, p50_ms: float, p99_ms: float, source: str = "", warn: bool = False) -> None:
        """The pipeline's health as the overlay sees it (``stats``: the metrics' StageStats rows)."""
        rows = [{"name": s.name, "status": s.status, "fps": round(s.fps, 1), "busy": round(s.busy, 3),
                 "queue": s.depth, "drops": s.drops, "latency_p50_ms": round(s.latency_p50 * 1000, 1),
                 "latency_p99_ms": round(s.latency_p99 * 1000, 1)} for s in stats]
        new = {"stages": rows, "latency_p50_ms": round(float(p50_ms), 1), "latency_p99_ms": round(float(p99_ms), 1),
               "source": source or "live", "warn": bool(warn), "streams": self.streams_json(),
               "updated": time.time(), "started": self._stats["started"]}
        with self._cond:
            self._stats = new

    def stats(self) -> dict:
        with self._cond:
            return dict(self._stats)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        with self._work:
            self._work.notify_all()
        self._encoder.join(timeout=5)
