"""Blind time: outages of the gallery server summed, written as one status line and read back from it."""

from __future__ import annotations

import numpy as np
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


@pytest.mark.timeout(60)
def test_a_lost_server_reaches_the_display_as_a_red_line_and_the_summary_as_blind_time(tmp_path):
    """The identify stage's row carries the outage of its (real, unreachable) server to the display and the
    supervisor, the way capture's row carries a lost source."""
    import socket
    import threading
    import time
    from types import SimpleNamespace

    from app.gallery import GalleryUnavailable
    from app.gallery.server import ServerGallery
    from app.runtime.metrics import Metrics
    from app.runtime.process import StageContext
    from app.runtime.stages import DisplayStage, IdentifyStage
    from app.settings import Settings
    from tests.app.gallery import unit

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    gallery = ServerGallery("faces", 512, url=url, spool_dir=tmp_path / "spool", timeout=2, connect=False)
    metrics = Metrics.create(["identify", "display"])
    try:
        settings = Settings.load(None, environ={})
        stop = threading.Event()
        identify_ctx = StageContext("identify", {}, {}, {}, stop, metrics)
        display_ctx = StageContext("display", {}, {}, {}, stop, metrics)
        stage = IdentifyStage(settings)
        stage.identify = SimpleNamespace(gallery=gallery)
        display = DisplayStage(settings, None, {0: "clip"})

        stage._gallery_status(identify_ctx)  # all well so far: the row stays empty, nothing shown
        assert metrics.status("identify")[1] == "" and display._source_status(display_ctx) == ("", False)
        with pytest.raises(GalleryUnavailable):
            gallery.search(unit(np.random.default_rng(0), 1), 0.5)
        stage._gallery_status(identify_ctx)
        text, warn = display._source_status(display_ctx)
        assert warn and text.startswith("gallery: unreachable")

        time.sleep(0.3)
        gallery.outage.up()  # the server answers again
        stage._gallery_status(identify_ctx)
        assert display._source_status(display_ctx) == ("", False)
        assert blind_seconds(metrics.status("identify")[1]) >= 0.3  # what run_pipeline's summary reads back
    finally:
        gallery.close()
        metrics.close()
