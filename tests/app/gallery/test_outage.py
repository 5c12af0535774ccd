"""Blind time: outages of the gallery server summed, written as one status line and read back from it."""

from __future__ import annotations

import pytest

from app.gallery.outage import Outage, blind_seconds, is_unreachable, status_text


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_outages_add_up_and_the_status_line_says_so():
    clock = Clock()
    o = Outage(clock)
    assert status_text(o) == "" and status_text(None) == ""
    o.up()  # up while never down: nothing to count
    o.down()
    clock.t += 4
    o.down()  # still the same outage
    text = status_text(o)
    assert is_unreachable(text) and blind_seconds(text) == 4
    o.up()
    clock.t += 10  # reachable time is not blind
    o.down()
    clock.t += 2.5
    o.up()
    text = status_text(o)
    assert not is_unreachable(text) and blind_seconds(text) == pytest.approx(6.5)
    assert o.count == 2


def test_other_status_lines_are_not_read_as_blind_time():
    assert blind_seconds("source: reconnecting (blind 5 s)") == 0.0
    assert not is_unreachable("source: unreachable")
