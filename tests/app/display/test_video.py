"""The annotated video file: H.264 a browser plays, readable by OpenCV frame for frame, never half-written."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.display.video import VideoFile, frame_rate
from app.errors import FacestreamError

needs_ffprobe = pytest.mark.skipif(not shutil.which("ffprobe"), reason="needs ffprobe (scripts/setup.sh: ffmpeg)")


def probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                          "stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames,color_space",
                          "-of", "json", str(path)], check=True, capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)["streams"][0]


def frames(n: int, w: int = 160, h: int = 120) -> list[np.ndarray]:
    """Frames a person can tell apart: a bar moving across a coloured background."""
    out = []
    for i in range(n):
        f = np.full((h, w, 3), (40, 90, 160), np.uint8)
        x = i * (w - 20) // max(n - 1, 1)
        f[:, x:x + 20] = (230, 230, 230)
        out.append(f)
    return out


def read_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    got = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        got.append(f)
    cap.release()
    return got


@needs_ffprobe
def test_mp4_is_h264_yuv420p_at_the_source_rate_and_reads_back_frame_for_frame(tmp_path):
    out = tmp_path / "a.mp4"
    video = VideoFile(out, 30000 / 1001)
    sent = frames(45)
    for f in sent:
        video.write(f)
    video.close()
    info = probe(out)
    assert info["codec_name"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (160, 120)
    assert Fraction(info["r_frame_rate"]) == Fraction(30000, 1001)
    assert int(info["nb_read_frames"]) == 45
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 45
    cap.release()
    got = read_all(out)
    assert len(got) == 45
    for a, b in zip(sent, got):  # same pictures in the same order, colours kept (BT.601 both ways)
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4


@needs_ffprobe
def test_odd_sizes_are_padded_to_even(tmp_path):
    out = tmp_path / "odd.mp4"
    video = VideoFile(out, 25)
    for f in frames(5, 161, 91):
        video.write(f)
    video.close()
    info = probe(out)
    assert (info["width"], info["height"]) == (162, 92) and info["codec_name"] == "h264"
    assert len(read_all(out)) == 5


@needs_ffprobe
def test_a_run_stopped_early_still_leaves_a_playable_file(tmp_path):
    """Stopped mid-stream (Ctrl-C: the display closes with keep=True after whatever it wrote)."""
    out = tmp_path / "early.mp4"
    video = VideoFile(out, 30)
    for f in frames(7):
        video.write(f)
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        video.close(keep=True)
    assert probe(out)["codec_name"] == "h264" and len(read_all(out)) == 7
    assert [p.name for p in tmp_path.iterdir()] == ["early.mp4"]  # no temporary file left


def test_frame_rates_keep_ntsc_fractions():
    assert frame_rate(29.97002997) == Fraction(30000, 1001)
    assert frame_rate(25.0) == 25
    assert frame_rate(0.0) == 30  # unknown rate: 30


def test_avi_stays_motion_jpeg(tmp_path):
    out = tmp_path / "a.avi"
    video = VideoFile(out, 30)
    for f in frames(4):
        video.write(f)
    video.close()
    cap = cv2.VideoCapture(str(out))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    assert fourcc == "MJPG" and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_an_unknown_extension_is_one_clear_error_and_leaves_nothing(tmp_path):
    video = VideoFile(tmp_path / "a.gif", 30)
    with pytest.raises(FacestreamError, match=r"use a \.mp4, \.mov, \.mkv or \.avi name"):
        video.write(frames(1)[0])
    video.close(keep=False)
    assert list(tmp_path.iterdir()) == []


def test_a_frame_of_another_size_is_refused_and_the_file_still_closes(tmp_path):
    out = tmp_path / "a.mp4"
    video = VideoFile(out, 30)
    video.write(frames(1)[0])
    with pytest.raises(FacestreamError, match="one file holds one size"):
        video.write(np.zeros((50, 50, 3), np.uint8))
    video.close()
    assert len(read_all(out)) == 1
