"""Recent faces: the best crop per track (cut a few times a second at most), names follow the pipeline's, old
tracks are forgotten."""

from __future__ import annotations

import numpy as np

from app.types import FrameRef
from app.web.recent import KEEP_CROPS, RecentFaces
from tests.app.web.conftest import noisy_frame, one_face


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_crops_are_rate_limited_and_the_sharpest_kept_first():
    clock = Clock()
    recent = RecentFaces(crop_hz=4, clock=clock)
    blurry = np.full((360, 640, 3), 90, np.uint8)
    recent.observe(FrameRef(1, 0.0, 0, 1), blurry, one_face())
    clock.t += 0.1  # within 1/4 s: no new crop
    recent.observe(FrameRef(2, 0.0, 0, 2), noisy_frame(), one_face())
    assert len(recent.crops(0, 7)) == 1
    clock.t += 0.3
    recent.observe(FrameRef(3, 0.0, 0, 3), noisy_frame(), one_face())
    crops = recent.crops(0, 7)
    assert len(crops) == 2
    assert len(crops[0]) > len(crops[1])  # the textured (sharper) crop is first: its JPEG is far larger
    for _ in range(2 * KEEP_CROPS):
        clock.t += 0.3
        recent.observe(FrameRef(4, 0.0, 0, 4), noisy_frame(), one_face())
    assert len(recent.crops(0, 7)) == KEEP_CROPS


def test_name_follows_the_pipeline_and_a_torn_frame_gives_no_crop():
    clock = Clock()
    recent = RecentFaces(clock=clock)
    recent.observe(FrameRef(1, 0.0, 0, 1), noisy_frame(), one_face(), still_valid=lambda: False)
    assert recent.crops(0, 7) == []
    clock.t += 1
    recent.observe(FrameRef(2, 0.0, 0, 2), noisy_frame(), one_face(name="Ada", person_id="ada"))
    (row,) = recent.tracks()
    assert (row["name"], row["person_id"], row["first_seen"], row["last_seen"]) == ("Ada", "ada", 1000.0, 1001.0)
    assert row["crop_url"] == "/api/tracks/0/7/crop.jpg?v=1"


def test_old_tracks_are_forgotten():
    clock = Clock()
    recent = RecentFaces(window_s=60, clock=clock)
    recent.observe(FrameRef(1, 0.0, 0, 1), None, one_face(track_id=1))
    clock.t += 61
    recent.observe(FrameRef(2, 0.0, 1, 2), None, one_face(track_id=2))
    assert [(r["stream"], r["track_id"]) for r in recent.tracks()] == [(1, 2)]
    assert recent.tracks()[0]["live"] and recent.get(0, 1) is None
