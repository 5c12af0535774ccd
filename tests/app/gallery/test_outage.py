"""Blind time: outages of the gallery server summed, said in one status line, carried by the health column."""

from __future__ import annotations

import numpy as np
import pytest

from app.gallery.outage import Outage, status_text


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
    assert o.unreachable and o.blind_s() == 4
    assert status_text(o) == "gallery: unreachable, names not confirmed (blind 4 s)"
    o.up()
    clock.t += 10  # reachable time is not blind
    o.down()
    clock.t += 2.5
    o.up()
    assert not o.unreachable and o.blind_s() == pytest.approx(6.5)
    assert status_text(o) == "gallery: reconnected (blind 6.5 s in all)"
    assert o.count == 2


@pytest.mark.timeout(60)
def test_a_lost_server_reaches_the_display_as_a_red_line_and_the_summary_as_blind_time(tmp_path):
    """The identify stage's health column carries the outage of its (real, unreachable) server to the display
    and the summary, the way capture's carries a lost source."""
    import socket
    import threading
    import time
    from types import SimpleNamespace

    from app.gallery import GalleryUnavailable
    from app.gallery.server import ServerGallery
    from app.protocol import Health
    from app.runtime.context import StageContext
    from app.runtime.metrics import Metrics
    from app.settings import Settings
    from app.stages.display import DisplayStage
    from app.stages.identify import IdentifyStage
    from tests.app.gallery import unit

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    gallery = ServerGallery("faces", 512, url=url, spool_dir=tmp_path / "spool", timeout=2, connect=False)
    metrics = Metrics.create(["identify", "display"])
    try:
        stop = threading.Event()
        stage = IdentifyStage(Settings.load(None, environ={}))
        stage.identify = SimpleNamespace(gallery=gallery)
        stage.ctx = StageContext("identify", {}, {}, {}, stop, metrics)
        display = DisplayStage(None, {0: "clip"})
        display.ctx = StageContext("display", {}, {}, {}, stop, metrics)

        stage.report_gallery()  # all well so far: nothing in the column, nothing shown
        assert metrics.health("identify") == (Health.OK, "", 0.0) and display.outages() == ("", False)
        with pytest.raises(GalleryUnavailable):
            gallery.search(unit(np.random.default_rng(0), 1), 0.5)
        stage.report_gallery()
        text, warn = display.outages()
        assert warn and text.startswith("gallery: unreachable")

        time.sleep(0.3)
        gallery.outage.up()  # the server answers again
        stage.report_gallery()
        assert display.outages() == ("", False)
        state, _, blind = metrics.health("identify")
        assert state == Health.RECOVERED and blind >= 0.3  # what run_pipeline's summary reports
    finally:
        gallery.close()
        metrics.close()
