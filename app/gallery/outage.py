"""How long the gallery server has been unreachable during a run ("blind": faces seen but no name confirmed).

The identify stage reports ``status_text`` and the blind time in its metrics row's health column: the display
shows the line in red while the server is down, and the final summary says the blind time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

GALLERY_PREFIX = "gallery: "


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
