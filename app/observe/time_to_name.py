"""Time to a name: for each track, from the capture of its first detected frame to (a) the capture of its
first named frame and (b) the wall clock when its ``person.appeared`` was published (a sink acknowledged it).

The identify stage's tap and the publisher put marks on a queue; a thread in the parent collects them while
the pipeline runs (the queue must be read as it fills, or a child would block at exit flushing it). Marks are
kept per (run, stream, track) and the first of each kind wins, so a restarted identify stage counts a track
once.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import numpy as np

from app.events.tap import NAMED_MARK, PUBLISHED_MARK, UNNAMED_MARK


@dataclass
class Percentiles:
    count: int
    p50: float
    p95: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Percentiles | None:
        if not values:
            return None
        a = np.asarray(values, np.float64)
        return cls(len(a), float(np.percentile(a, 50)), float(np.percentile(a, 95)), float(a.max()))


@dataclass
class TimeToName:
    named: dict[tuple, float] = field(default_factory=dict)  # track -> seconds, capture to capture
    published: dict[tuple, float] = field(default_factory=dict)  # track -> seconds, capture to wall clock
    unnamed: set[tuple] = field(default_factory=set)  # tracks that ended without ever being named

    def add(self, mark: tuple) -> None:
        kind, run, stream, track, first, at = mark
        key = (run, str(stream), int(track))
        if kind == NAMED_MARK:
            self.named.setdefault(key, max(0.0, at - first))
            self.unnamed.discard(key)
        elif kind == PUBLISHED_MARK:
            self.published.setdefault(key, max(0.0, at - first))
        elif kind == UNNAMED_MARK and key not in self.named:
            self.unnamed.add(key)

    def capture(self) -> Percentiles | None:
        return Percentiles.of(list(self.named.values()))

    def publish(self) -> Percentiles | None:
        return Percentiles.of(list(self.published.values()))


class Collector:
    """Reads ``marks`` on a daemon thread until ``close``."""

    def __init__(self, marks) -> None:
        self.marks = marks
        self.result = TimeToName()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="time-to-name", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._take(0.2)

    def _take(self, timeout: float) -> bool:
        try:
            self.result.add(self.marks.get(timeout=timeout))
            return True
        except queue.Empty:
            return False
        except (EOFError, OSError, ValueError):  # the queue was closed under us at shutdown
            self._stop.set()
            return False

    def close(self) -> TimeToName:
        """Stop and take what is still queued (the children flushed their marks before they exited)."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        while self._take(0.05):
            pass
        return self.result
