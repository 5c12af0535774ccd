"""The publisher as a stage of the pipeline: its own process, fed by the identify stage's events queue.

It owns its loop (no shared-memory records in or out): events arrive on a ``multiprocessing`` queue whose
``put`` never blocks the identify stage, are persisted in the outbox at once and sent by the sinks' threads.
Its metrics row says what it did: items = events accepted, depth = events owed to the sinks, and the
``events`` counters (sent, failed attempts, dropped by the queue's bound).
"""

from __future__ import annotations

import logging

from app.events.tap import PUBLISHED_MARK, EventsLink
from app.observe import counters
from app.settings import Settings

log = logging.getLogger("facestream.events")


class PublisherStage:
    """Built in the parent from the settings and the link the identify stage shares; set up in the child."""

    #: at the end of a file, how long to wait for the sinks to take what is queued: past paho's longest
    #: reconnect delay (30 s), so a broker back by then is reached; what is left stays queued for the next start
    drain_s = 35.0

    def __init__(self, settings: Settings, link: EventsLink) -> None:
        self.settings = settings
        self.link = link

    def setup(self, ctx) -> None:
        from app.events.publisher import Publisher
        from app.redact import setup_logging
        from app.runtime.stages import name_process

        setup_logging(self.settings.log_level)
        name_process(ctx.name)
        self.publisher = Publisher.from_settings(self.settings)
        self.publisher.on_published = self._published
        self.publisher.start()
        log.info("events of run %s go to %s", self.link.run, ", ".join(s.name for s in self.publisher.sinks))

    def run(self, ctx) -> None:
        from app.events.publisher import pump

        ticked = [0]

        def report() -> None:
            ctx.metrics.set_counter(counters.EVENTS_SENT, sum(self.publisher.sent.values()))
            ctx.metrics.set_counter(counters.EVENTS_FAILED, sum(self.publisher.failed.values()))
            ctx.metrics.set_counter(counters.EVENTS_DROPPED, self.publisher.outbox.dropped)
            ctx.metrics.depth(self.publisher.owed())
            if self.publisher.accepted > ticked[0]:
                ctx.metrics.tick(self.publisher.accepted - ticked[0])
                ticked[0] = self.publisher.accepted

        try:
            pump(self.publisher, self.link.events, lambda: ctx.stopping, self.drain_s, report)
        finally:
            report()

    def _published(self, event, at: float) -> None:
        if self.link.marks is not None:
            self.link.marks.put((PUBLISHED_MARK, event.run, event.stream, event.track, event.first_seen, at))

    def teardown(self) -> None:
        publisher = getattr(self, "publisher", None)
        if publisher is not None:
            publisher.close()
