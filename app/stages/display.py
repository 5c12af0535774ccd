"""Display: draws on the frame the boxes were computed from (read back from its ring), writes and serves it.

While a live source is down and nothing flows, ``idle`` redraws the last frame with a red line saying so
(window and the web app's picture; the video file and the track log get real frames only).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from app.display.annotate import Overlay
from app.display.present import OutputOptions, Present
from app.display.stats_text import compact_lines
from app.protocol import Context, Health, Stage
from app.types import Faces

log = logging.getLogger("facestream.stage")


class DisplayStage(Stage):
    idle_after = 0.5  # seconds without a record before the last frame is redrawn with the source status

    def __init__(self, options: OutputOptions, names: dict[int, str]) -> None:
        self.options = options
        self.names = names
        self.present: Present | None = None
        self.ok = False

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.present = Present(self.options)
        self.present.stopping = lambda: ctx.stopping  # a paced or paused window never holds up a stop
        self.reads_frames = self.present.draws  # drawn on in place: the display is the frame's last reader
        if self.present.server:  # GET /metrics on the web app reads the stages' shared rows
            self.present.server.live.table = ctx.table
        self.latencies: list[float] = []
        self.next_overlay = 0.0
        self.lines: list[str] = []
        self.compact: list[str] = []
        self.warn = False

    def outages(self) -> tuple[str, bool]:
        """What is down now (a source reconnecting, the gallery unreachable), in one line ("" when all is
        well), and whether anything is."""
        table = self.ctx.table
        texts = [note for state, note, _ in map(table.health, table.spec.stages) if state == Health.DOWN and note]
        return "; ".join(texts), bool(texts)

    def _overlay(self, force: bool = False) -> Overlay:
        now = time.monotonic()
        if force or now >= self.next_overlay:
            self.next_overlay = now + 0.5
            lat = np.asarray(self.latencies[-300:]) * 1000
            p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (0, 0)
            source, self.warn = self.outages()
            stats = self.ctx.table.snapshot()
            self.lines = [source if self.warn else " | ".join(self.names.values()),
                          *self.ctx.table.overlay_lines(stats),
                          f"capture->display latency p50 {p50:.0f} ms  p99 {p99:.0f} ms"]
            compact = compact_lines(stats, p50, p99)
            self.compact = [source, compact[0]] if self.warn else compact
            if self.present.server:  # the web page shows these as HTML
                self.present.server.live.set_stats(stats, p50, p99, source, self.warn)
        return Overlay(list(self.lines), warn=self.warn, compact=list(self.compact))

    def _closed(self) -> None:
        log.info("window closed: stopping")
        self.ctx.request_stop()

    def process(self, frame: np.ndarray | None, rec: Faces) -> None:
        if not self.present.wait_turn(rec.frame):  # a file in a window: its frame's time comes first
            self._closed()
            return None
        self.latencies.append(time.time() - rec.frame.ts)
        torn = self.present.torn
        keep = self.present(frame, rec.frame, rec, self._overlay(), lambda: self.ctx.frame_valid(rec.frame))
        if self.present.torn != torn:
            self.ctx.drop()
        if not keep:
            self._closed()
        return None

    def paused_s(self) -> float:
        return self.present.waited if self.present is not None else 0.0

    def idle(self) -> None:
        """Nothing arrived for a while: keep the window responsive; if something is down, say so on the last
        picture."""
        overlay = self._overlay(force=True)
        ok = self.present.refresh(overlay) if overlay.warn else self.present.pump()
        if not ok:
            self._closed()

    def finish(self) -> list[Faces]:
        self.ok = True  # the stream ended: the outputs are complete
        return []

    def teardown(self) -> None:
        if self.present is not None:
            self.present.close(ok=self.ok or self.present.frames > 0)
