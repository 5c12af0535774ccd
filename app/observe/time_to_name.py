"""Time to a name: for each track, from the capture of its first detected frame to (a) the capture of its
first named frame and (b) the wall clock when its ``person.appeared`` was published (a sink acknowledged it).

The identify stage's tap and the publisher append marks to files in a folder the parent reads at the end
(app/events/spool.py: a killed stage cannot jam a file as it could a queue). Marks are kept per (run,
stream, track) and the first of each kind wins, so a restarted identify stage counts a track once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.events.spool import read_marks
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
    """Marks are (kind, run, stream, track, first, at): ``first`` the capture time of the first frame the face
    was detected in (the tap's; a publisher mark carries the event's ``first_seen``, used only when the tap's
    mark is missing), ``at`` the capture time (named) or wall clock (published)."""

    first: dict[tuple, float] = field(default_factory=dict)  # track -> capture time of its first detection
    named_at: dict[tuple, float] = field(default_factory=dict)  # track -> capture time of its first named frame
    published_at: dict[tuple, tuple[float, float]] = field(default_factory=dict)  # track -> (wall clock, first_seen)
    unnamed: set[tuple] = field(default_factory=set)  # tracks that ended without ever being named

    def add(self, mark: tuple) -> None:
        kind, run, stream, track, first, at = mark
        key = (run, str(stream), int(track))
        if kind == NAMED_MARK:
            self.first.setdefault(key, first)
            self.named_at.setdefault(key, at)
            self.unnamed.discard(key)
        elif kind == PUBLISHED_MARK:
            self.published_at.setdefault(key, (at, first))
        elif kind == UNNAMED_MARK and key not in self.named_at:
            self.unnamed.add(key)

    @property
    def named(self) -> dict[tuple, float]:
        """Seconds from first detection to the first named frame, per track (capture clock to capture clock)."""
        return {k: max(0.0, at - self.first[k]) for k, at in self.named_at.items()}

    @property
    def published(self) -> dict[tuple, float]:
        """Seconds from first detection to person.appeared acknowledged by a sink, per track."""
        return {k: max(0.0, at - self.first.get(k, seen)) for k, (at, seen) in self.published_at.items()}

    def capture(self) -> Percentiles | None:
        return Percentiles.of(list(self.named.values()))

    def publish(self) -> Percentiles | None:
        return Percentiles.of(list(self.published.values()))


def time_to_name(folder: str | Path) -> TimeToName:
    """The marks the stages wrote in ``folder`` (app.events.spool.MarkLog), gathered."""
    result = TimeToName()
    for mark in read_marks(folder):
        result.add(mark)
    return result
