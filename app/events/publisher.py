"""The publisher: take events, persist them (deduplicated), send them to each configured sink, acknowledge.

One ``Publisher`` per pipeline, run by ``publisher_main`` in its own process: a sink that is down, slow or
reconnecting never stalls a stage. Each sink has a thread that sends what the outbox owes it, oldest first,
retrying the head with exponential backoff; the outbox forgets an event once every sink has acknowledged it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from app.events.outbox import Outbox
from app.events.schema import APPEARED, Event, EventError
from app.events.sink import SendFailed, Sink
from app.settings import Settings

log = logging.getLogger("facestream.events")


def sinks_from_settings(settings: Settings) -> list[Sink]:
    """The sinks the settings configure (none when neither MQTT_URL nor WEBHOOK_URL is set)."""
    sinks: list[Sink] = []
    if settings.mqtt_url:
        from app.events.mqtt import MqttSink

        sinks.append(MqttSink(settings.mqtt_url, settings.mqtt_topic))
    if settings.webhook_url:
        from app.events.webhook import WebhookSink

        sinks.append(WebhookSink(settings.webhook_url, settings.webhook_secret))
    return sinks


class Publisher:
    def __init__(self, events_dir: str | Path, sinks: Sequence[Sink], max_bytes: int = 256 << 20,
                 retry: tuple[float, float] = (0.5, 30.0)) -> None:
        self.sinks = list(sinks)
        self.outbox = Outbox(events_dir, [s.name for s in self.sinks], max_bytes=max_bytes)
        self.retry = retry
        self.sent = {s.name: 0 for s in self.sinks}
        self.failed = {s.name: 0 for s in self.sinks}
        self.accepted = 0  # events taken into the outbox (duplicates refused are not counted)
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._outstanding: dict[str, set[int]] = {s.name: set() for s in self.sinks}
        self._threads: list[threading.Thread] = []
        self._kicks = {s.name: threading.Event() for s in self.sinks}  # cut a backoff short (drain, close)
        self._appeared: dict[int, Event] = {}  # seq -> person.appeared not yet acknowledged by any sink
        #: called once per person.appeared when the first sink has it, with the wall-clock time (time to a name)
        self.on_published: Callable[[Event, float], None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs) -> Publisher:
        return cls(settings.events_dir, sinks_from_settings(settings), max_bytes=settings.events_max_mb << 20,
                   **kwargs)

    def start(self) -> Publisher:
        for sink in self.sinks:
            sink.start(lambda seq, name=sink.name: self._acked(name, seq))
            thread = threading.Thread(target=self._deliver, args=(sink,), name=f"events-{sink.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def submit(self, event: Event) -> bool:
        """Persist ``event`` for every sink; False when it is a duplicate of one accepted before."""
        seq = self.outbox.accept(event)
        if seq is None:
            log.debug("duplicate %s for track %d of stream %s dropped", event.type, event.track, event.stream)
            return False
        self.accepted += 1
        with self._wake:
            if event.type == APPEARED and self.on_published is not None:
                self._appeared[seq] = event
            self._wake.notify_all()
        return True

    def drain(self, timeout: float) -> bool:
        """Wait until every sink has every event (the end of a file); False if some are still owed."""
        deadline = time.monotonic() + timeout
        for kick in self._kicks.values():  # a sink in a long backoff is tried again now, not in 30 s
            kick.set()
        while self.owed() and time.monotonic() < deadline:
            with self._wake:
                self._wake.wait(0.05)
        return self.owed() == 0

    def owed(self) -> int:
        """Events the configured sinks have not acknowledged yet (summed over the sinks)."""
        return sum(self.outbox.count(s.name) for s in self.sinks)

    def close(self) -> None:
        """Stop sending; what is not acknowledged stays in the outbox for the next publisher."""
        self._stop.set()
        for kick in self._kicks.values():
            kick.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=15.0)
        for sink in self.sinks:
            sink.close()
        owed = self.owed()
        if owed:
            log.warning("%d event(s) not yet delivered stay queued in %s for the next start", owed,
                        self.outbox.path.parent)
        self.outbox.close()

    # ------------------------------------------------------------------
    def _acked(self, sink: str, seq: int) -> None:
        self.outbox.ack(sink, seq)
        with self._wake:
            self._outstanding[sink].discard(seq)
            self.sent[sink] += 1
            self._wake.notify_all()
            appeared = self._appeared.pop(seq, None)
        if appeared is not None and self.on_published is not None:
            self.on_published(appeared, time.time())

    def _deliver(self, sink: Sink) -> None:
        """Send what the outbox owes ``sink``, in order; on failure wait (backoff) and send the same one again."""
        cursor, delay, failing_since = 0, self.retry[0], None
        outstanding = self._outstanding[sink.name]
        while not self._stop.is_set():
            with self._wake:
                room = sink.window - len(outstanding)
            batch = self.outbox.pending(sink.name, after=cursor, limit=room) if room > 0 else []
            if not batch:
                with self._wake:
                    self._wake.wait(0.5)
                continue
            for seq, body in batch:
                if self._stop.is_set():
                    return
                with self._wake:
                    outstanding.add(seq)  # before sending: the acknowledgement may come before send returns
                try:
                    done = sink.send(seq, body)
                except SendFailed as exc:
                    with self._wake:
                        outstanding.discard(seq)
                    self.failed[sink.name] += 1
                    if failing_since is None:
                        failing_since = time.monotonic()
                        log.warning("%s — retrying with backoff; %d event(s) wait in %s", exc,
                                    self.outbox.count(sink.name), self.outbox.path.parent)
                    kick = self._kicks[sink.name]
                    if kick.wait(delay):
                        kick.clear()
                        delay = self.retry[0]
                    else:
                        delay = min(delay * 2, self.retry[1])
                    break
                if failing_since is not None:
                    log.info("%s takes events again after %.0f s", sink.name, time.monotonic() - failing_since)
                    failing_since, delay = None, self.retry[0]
                cursor = seq
                if done:
                    self._acked(sink.name, seq)


def publisher_main(settings: Settings, events, stop=None, drain_s: float = 10.0,
                   retry: tuple[float, float] = (0.5, 30.0)) -> None:
    """A publisher process: events (Event or its dict) from ``events`` (a queue) until None or ``stop``; at
    None, wait up to ``drain_s`` for the sinks to take what is queued. ``retry``: first and longest wait
    between attempts to send to a sink that failed."""
    from app.redact import setup_logging

    setup_logging(settings.log_level)
    publisher = Publisher.from_settings(settings, retry=retry).start()
    try:
        pump(publisher, events, lambda: stop is not None and stop.is_set(), drain_s)
    finally:
        publisher.close()


def pump(publisher: Publisher, events, stopping: Callable[[], bool], drain_s: float,
         every: Callable[[], None] | None = None) -> bool:
    """Submit what arrives on ``events`` until None (then drain up to ``drain_s``: True) or ``stopping()``
    (False); ``every`` is called about five times a second (metrics)."""
    while not stopping():
        if every is not None:
            every()
        try:
            item = events.get(timeout=0.2)
        except queue.Empty:
            continue
        if item is None:
            publisher.drain(drain_s)
            return True
        try:
            publisher.submit(item if isinstance(item, Event) else Event.from_dict(item))
        except EventError as exc:
            log.error("event dropped: %s", exc)
    return False
