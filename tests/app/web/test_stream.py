"""MJPEG from the live view, and the live view's encoding schedule (full rate only while someone watches)."""

from __future__ import annotations

import threading
import time
import urllib.request

import anyio
import cv2
import numpy as np
import pytest

from app.settings import Settings
from app.web.library_access import LibraryAccess
from app.web.live import GRID, LiveView
from app.web.server import WebServer
from app.web.stream import frames
from tests.app.web.conftest import FakeLibrary


def test_frames_yield_each_new_picture_as_a_multipart_part():
    live = LiveView({0: "a"}, max_fps=1000)
    frame = np.full((120, 160, 3), (0, 128, 255), np.uint8)
    got = []

    async def collect():
        got.extend([part async for part in frames(live, 0, limit=2)])

    def read():
        anyio.run(collect)

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 5
    while reader.is_alive() and time.monotonic() < deadline:
        live.publish(0, frame)
        time.sleep(0.01)
    reader.join(1)
    assert len(got) == 2
    part = got[0]
    assert part.startswith(b"--frame\r\nContent-Type: image/jpeg\r\n")
    img = cv2.imdecode(np.frombuffer(part[part.index(b"\xff\xd8"):], np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (120, 160, 3) and abs(int(img[60, 80, 2]) - 255) < 10


def test_pictures_are_taken_every_frame_only_while_watched_and_the_newest_wins():
    live = LiveView({0: "a", 1: "b"}, max_fps=5, idle_fps=0.5)
    frame = np.zeros((32, 32, 3), np.uint8)
    assert live.publish(0, frame)  # the first one always (a new viewer gets a picture at once)
    assert not live.publish(0, frame)  # nobody watches: the next one waits 2 s
    assert live.wait(0, 0, 5)[0] == 1
    calls = []
    with live.watching(GRID):
        for shade in range(1, 6):  # a burst: every frame is taken (a copy), the encoder keeps up at its rate
            assert live.publish(GRID, lambda s=shade: calls.append(s) or np.full((32, 32, 3), 50 * s, np.uint8))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the last picture of the burst is the one shown in the end
            version, jpeg = live.wait(GRID, 0, 1)
            if jpeg and abs(int(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[16, 16, 0]) - 250) < 8:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the burst's last picture never became the served one")
    assert calls == [1, 2, 3, 4, 5]
    assert version <= 2  # a burst of 5 within the encoder's 1/5 s: at most two encodes, not one per frame
    live.close()


def test_mjpeg_endpoint_serves_over_http(client, live):
    live.publish(0, np.full((48, 64, 3), 200, np.uint8))
    with client.stream("GET", "/stream/0.mjpg") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("multipart/x-mixed-replace")
        data = b""
        for chunk in resp.iter_bytes():
            data += chunk
            if b"\xff\xd9" in data:
                break
        live.close()  # the pipeline stopping ends every stream
    assert data.startswith(b"--frame") and b"\xff\xd8" in data


@pytest.mark.timeout(30)
def test_a_viewer_that_goes_away_stops_counting_at_once():
    """A closed tab must not leave the display copying and encoding every frame for nobody."""
    server = WebServer(Settings(), 0, "127.0.0.1", {0: "x"}, LibraryAccess(Settings(), FakeLibrary()))
    stop = threading.Event()

    def feed():
        while not stop.is_set():
            server.live.publish(0, np.zeros((48, 64, 3), np.uint8))
            time.sleep(0.02)

    threading.Thread(target=feed, daemon=True).start()
    try:
        for _ in range(3):
            resp = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/stream.mjpg", timeout=10)
            assert resp.read1(1000).startswith(b"--frame")
            assert server.live._viewers.get(0) == 1
            resp.close()
            deadline = time.monotonic() + 5
            while server.live._viewers.get(0) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.live._viewers.get(0) == 0, "the viewer was still counted after it closed the stream"
    finally:
        stop.set()
        server.close()
