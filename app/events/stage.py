"""The publisher as a stage of the pipeline list: its own process, between identify and display.

Records pass through it untouched (it is in the list so that the supervisor starts, watches and restarts it
like any stage, and so that the end of the stream reaches it after identify's last events). A thread of its
own reads the events the identify stage spooled (app/events/spool.py), persists each in the outbox at once
and lets the sinks' threads send them: a broker or receiver that is down never holds up a record. At the end
of the stream (``finish``) it waits for the sinks, up to ``drain_s``, before passing the end on.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from app.events.tap import PUBLISHED_MARK, EventsLink
from app.observe import counters
from app.protocol import Context, Stage
from app.settings import Settings
from app.types import Faces

log = logging.getLogger("facestream.events")


class PublisherStage(Stage):
    """Built in the parent from the settings and the link the identify stage shares; set up in the child."""

    #: at the end of a file, how long to wait for the sinks to take what is queued: past paho's longest
    #: reconnect delay (30 s), so a broker back by then is reached; what is left stays queued for the next start
    drain_s = 35.0
    idle_after = 0.5  # metrics refreshed while no record flows (a live source down)

    def __init__(self, settings: Settings, link: EventsLink) -> None:
        self.settings = settings
        self.link = link
        self.publisher = None
        self._marks = None
        self._thread: threading.Thread | None = None  # made in setup, in the child (a lock does not pickle)
        self._stop: threading.Event | None = None
        self._next_report = 0.0

    def setup(self, ctx: Context) -> None:
        from app.events.publisher import Publisher

        self.metrics = getattr(ctx, "metrics", None)
        self._stop = threading.Event()
        self.publisher = Publisher.from_settings(self.settings)
        self.publisher.on_published = self._published
        self.publisher.start()
        self._thread = threading.Thread(target=self._pump, name="events-spool", daemon=True)
        self._thread.start()
        log.info("events of run %s go to %s", self.link.run, ", ".join(s.name for s in self.publisher.sinks))

    def process(self, frame: np.ndarray | None, rec: Faces) -> Faces:
        self._report()
        return rec

    def idle(self) -> None:
        self._report()

    def finish(self) -> list[Faces]:
        """The end of the stream: identify has spooled its last events (its end mark); wait for the sinks."""
        if self._thread is not None:
            self._thread.join(self.drain_s + 30.0)
        self._report(every=0.0)
        return []

    def teardown(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self.publisher is not None:
            self._report(every=0.0)
            self.publisher.close()

    # ------------------------------------------------------------------
    def _pump(self) -> None:
        from app.events.publisher import pump
        from app.events.spool import SpoolReader

        spool = SpoolReader(self.link.events, self.link.run)
        try:
            pump(self.publisher, spool, self._stop.is_set, self.drain_s)
        finally:
            spool.close()

    def _report(self, every: float = 0.25) -> None:
        now = time.monotonic()
        if self.metrics is None or self.publisher is None or now < self._next_report:
            return
        self._next_report = now + every
        self.metrics.set_counter(counters.EVENTS_SENT, sum(self.publisher.sent.values()))
        self.metrics.set_counter(counters.EVENTS_FAILED, sum(self.publisher.failed.values()))
        self.metrics.set_counter(counters.EVENTS_DROPPED, self.publisher.outbox.dropped)
        self.metrics.set_counter(counters.EVENTS_ACCEPTED, self.publisher.accepted)
        self.metrics.set_counter(counters.EVENTS_OWED, self.publisher.owed())

    def _published(self, event, at: float) -> None:
        if self.link.marks is not None:
            if self._marks is None:
                from app.events.spool import MarkLog

                self._marks = MarkLog(self.link.marks)
            self._marks.put((PUBLISHED_MARK, event.run, event.stream, event.track, event.first_seen, at))
