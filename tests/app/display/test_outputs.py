"""Outputs without a window: MJPEG over HTTP on loopback, the atomic video file, the JSONL track log."""

import json

import cv2
import numpy as np
import pytest

from app.display.annotate import Overlay, Renderer, colour_for
from app.display.outputs import TrackLog
from app.display.video import VideoFile
from app.errors import FacestreamError
from app.types import Faces, FrameRef


def faces_one(name="ada"):
    f = Faces(np.array([[100, 80, 180, 190]], np.float32), np.array([0.9], np.float32),
              np.tile(np.array([[120, 120]], np.float32), (1, 5, 1)), track_ids=np.array([7]))
    f.names, f.similarities = [name], np.array([0.61], np.float32)
    return f


def test_renderer_draws_box_label_and_overlay():
    frame = np.zeros((360, 640, 3), np.uint8)
    Renderer().draw(frame, faces_one(), Overlay(["detect: 30.0 fps", "latency p50 20 ms"]))
    colour = np.array(colour_for("ada"))
    assert np.all(np.abs(frame.astype(int) - colour) <= 2, axis=2).sum() > 200  # box + label fill
    assert np.all(frame[300:, :200] > 200, axis=2).sum() > 50  # overlay text, bottom-left


def test_video_file_appears_only_when_complete(tmp_path):
    out = tmp_path / "a.mp4"
    video = VideoFile(out, 30)
    for i in range(10):
        video.write(np.full((64, 64, 3), i * 20, np.uint8))
    assert not out.exists()  # still being written under a temporary name
    video.close()
    assert out.exists() and int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    failed = VideoFile(tmp_path / "b.mp4", 30)
    failed.write(np.zeros((64, 64, 3), np.uint8))
    failed.close(keep=False)  # a failed run leaves no half-written video
    assert list(tmp_path.iterdir()) == [out]


def test_track_log_is_one_json_line_per_frame(tmp_path):
    log = TrackLog(tmp_path / "t.jsonl")
    log.write(FrameRef(seq=3, ts=12.5, index=3), faces_one("obama"))
    log.write(FrameRef(seq=4, ts=12.6, index=4), Faces.empty())
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert rows[0]["frame"] == 3 and rows[0]["faces"][0]["name"] == "obama"
    assert rows[0]["faces"][0]["track_id"] == 7 and rows[0]["faces"][0]["similarity"] == 0.61
    assert rows[1]["faces"] == []


def test_track_log_gives_an_unknown_face_its_nearest_person_and_an_untracked_face_id_minus_one(tmp_path):
    faces = Faces(np.array([[0, 0, 40, 40], [50, 50, 90, 90]], np.float32), np.array([0.8, 0.7], np.float32),
                  np.zeros((2, 5, 2), np.float32), track_ids=np.array([4, -1]))
    faces.names, faces.person_ids, faces.nearest = ["unknown", "unknown"], ["", ""], ["obama", ""]
    faces.similarities = np.array([0.21, 0.0], np.float32)
    log = TrackLog(tmp_path / "t.jsonl")
    log.write(FrameRef(seq=0, ts=1.0, index=0), faces)
    log.write(FrameRef(seq=1, ts=1.1, index=1), faces_one("obama"))
    log.close()
    first, second = [json.loads(line)["faces"] for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert first[0] == {"track_id": 4, "box": [0.0, 0.0, 40.0, 40.0], "score": 0.8, "name": "unknown",
                        "person_id": None, "similarity": 0.21, "nearest": "obama"}
    assert first[1]["track_id"] == -1 and first[1]["nearest"] is None
    assert second[0]["name"] == "obama" and second[0]["nearest"] is None


def test_a_window_without_a_display_is_one_clear_error_naming_the_headless_options(monkeypatch):
    from app.display.outputs import Window

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(FacestreamError, match=r"cannot open a window .*--headless --out FILE\.mp4 or --serve PORT"):
        Window()
