"""How long the gallery server has been unreachable during a run ("blind": faces seen but no name confirmed).

The identify stage writes ``status_text`` into its metrics row (prefix ``gallery: ``): the display turns it
into a red line while the server is down, and the final summary reads the blind time back with ``blind_seconds``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

GALLERY_PREFIX = "gallery: "
_BLIND = re.compile(r"blind (\d+(?:\.\d+)?) s")


class Outage:
    """Down/up transitions of one gallery connection, summed into the time spent unreachable."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.since: float | None = None  # when the current outage began
        self.total = 0.0  # seconds of outages that have ended
        self.count = 0

    def down(self) -> None:
        if self.since is None:
            self.since = self.clock()
            self.count += 1

    def up(self) -> None:
        if self.since is not None:
            self.total += self.clock() - self.since
            self.since = None

    @property
    def unreachable(self) -> bool:
        return self.since is not None

    def blind_s(self) -> float:
        return self.total + (self.clock() - self.since if self.since is not None else 0.0)


def status_text(outage: Outage | None) -> str:
    """The identify stage's status line: empty until the first outage."""
    if outage is None or not outage.count:
        return ""
    if outage.unreachable:
        return f"{GALLERY_PREFIX}unreachable, names not confirmed (blind {outage.blind_s():.0f} s)"
    return f"{GALLERY_PREFIX}reconnected (blind {outage.blind_s():.1f} s in all)"


def is_unreachable(text: str) -> bool:
    return text.startswith(GALLERY_PREFIX) and "unreachable" in text


def blind_seconds(text: str) -> float:
    """Seconds run blind, read back from a status line (0 when the line is not the gallery's)."""
    m = _BLIND.search(text) if text.startswith(GALLERY_PREFIX) else None
    return float(m.group(1)) if m else 0.0
