"""MJPEG from the live view, and the live view's encoding schedule (full rate only while someone watches)."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from app.web.live import GRID, LiveView
from app.web.stream import frames


def test_frames_yield_each_new_picture_as_a_multipart_part():
    live = LiveView({0: "a"}, max_fps=1000)
    frame = np.full((120, 160, 3), (0, 128, 255), np.uint8)
    got = []

    def read():
        got.extend(frames(live, 0, limit=2))

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


def test_pictures_are_encoded_at_full_rate_only_while_watched():
    live = LiveView({0: "a", 1: "b"}, max_fps=1000, idle_fps=0.5)
    frame = np.zeros((32, 32, 3), np.uint8)
    assert live.publish(0, frame)  # the first one always (a new viewer gets a picture at once)
    assert not live.publish(0, frame)  # nobody watches: the next one waits 2 s
    calls = []
    with live.watching(GRID):
        assert live.publish(GRID, lambda: calls.append(1) or frame)
        time.sleep(0.002)
        assert live.publish(GRID, lambda: calls.append(1) or frame)
    assert calls == [1, 1] and live.picture(GRID)[0] == 2


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
