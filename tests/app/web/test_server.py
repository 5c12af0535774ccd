"""The web server in a thread: loopback by default, a busy port or a refused address is one clear error, and the
display's hook feeds it pictures without the stats burned in."""

from __future__ import annotations

import socket
import urllib.request

import cv2
import numpy as np
import pytest

from app.display.annotate import Overlay
from app.display.present import OutputOptions, Present
from app.errors import FacestreamError
from app.settings import Settings
from app.types import FrameRef
from app.web.library_access import LibraryAccess
from app.web.live import GRID
from app.web.server import WebServer, parse_serve
from tests.app.web.conftest import FakeLibrary, noisy_frame, one_face


@pytest.mark.parametrize(("value", "expected"), [("8080", (None, 8080)), ("0.0.0.0:8080", ("0.0.0.0", 8080)),
                                                 ("[::1]:9000", ("::1", 9000)), ("localhost:0", ("localhost", 0))])
def test_parse_serve(value, expected):
    assert parse_serve(value) == expected


@pytest.mark.parametrize("value", ["", "host:", "x:99999", "eighty"])
def test_parse_serve_refuses_bad_values(value):
    with pytest.raises(ValueError, match=r"expected \[HOST:\]PORT"):
        parse_serve(value)


@pytest.mark.timeout(30)
def test_server_runs_on_loopback_and_answers():
    server = WebServer(Settings(), 0, "127.0.0.1", {0: "clip"}, LibraryAccess(Settings(), FakeLibrary()))
    try:
        assert server.sock.getsockname()[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/people", timeout=10) as resp:
            assert resp.status == 200 and resp.read() == b"[]"
    finally:
        server.close()
    assert not server.thread.is_alive()


def test_busy_port_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(FacestreamError, match="choose another --serve port"):
            WebServer(Settings(), s.getsockname()[1], "127.0.0.1", {0: "clip"})


def test_public_address_without_token_is_refused_before_binding():
    with pytest.raises(FacestreamError, match=r"on 0.0.0.0:\d+ \(not loopback\) needs API_TOKEN"):
        WebServer(Settings(), 0, "0.0.0.0", {0: "clip"})


@pytest.mark.timeout(30)
def test_served_picture_has_boxes_but_no_stats_and_recent_faces_get_a_crop(tmp_path):
    present = Present(OutputOptions(serve_port=0, settings=Settings()))
    assert present.server is None  # port 0: no server
    options = OutputOptions(serve_port=free_port(), out=str(tmp_path / "a.mp4"), settings=Settings())
    present = Present(options)
    try:
        raw = np.full((360, 640, 3), 128, np.uint8)
        raw[60:160, 100:180] = noisy_frame(1)[60:160, 100:180]  # a textured "face" for the crop
        frame = raw.copy()
        overlay = Overlay(["detect: 30 fps", "latency p50 20 ms"], compact=["detect 30 fps", "p50 20 ms"])
        present(frame, FrameRef(1, 0.0, 0, 1), one_face(), overlay)
        version, jpeg = present.server.live.wait(0, 0, 5)
        assert version == 1 and jpeg
        served = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)
        # bottom-left, where the overlay panel goes: the served picture is the raw frame; the file's has the panel
        assert np.abs(served[320:, :200] - 128).mean() < 3
        assert np.abs(frame[320:, :200].astype(int) - 128).mean() > 20
        assert np.abs(served[58:62, 100:180] - 128).mean() > 20  # the box is drawn on it
        assert present.server.live.recent.crops(0, 7), "no crop of track 7"
    finally:
        present.close(ok=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(30)
def test_several_streams_get_a_picture_each_and_the_grid():
    options = OutputOptions(serve_port=free_port(), streams={0: "a", 1: "b"}, sizes={0: (640, 360), 1: (640, 360)},
                            settings=Settings())
    present = Present(options)
    try:
        for stream in (0, 1):
            present(noisy_frame(stream), FrameRef(stream, 0.0, stream, 0), one_face(track_id=stream + 1))
        live = present.server.live
        assert live.wait(0, 0, 5)[1] and live.wait(1, 0, 5)[1] and live.wait(GRID, 0, 5)[1]
        grid = cv2.imdecode(np.frombuffer(live.picture(GRID)[1], np.uint8), cv2.IMREAD_COLOR)
        assert grid.shape[1] > 640  # the mosaic, not one stream
        assert {r["stream"] for r in live.recent.tracks()} == {0, 1}
    finally:
        present.close(ok=False)
