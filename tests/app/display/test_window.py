"""A real OpenCV window under Xvfb: start `facestream run`, take a screenshot, check what a person would see."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.display.annotate import colour_for
from tests.app.faults.servers import track_rows

pytestmark = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("ffmpeg")),
                                reason="needs Xvfb and ffmpeg (scripts/setup.sh installs them)")


def _xvfb(width: int, height: int):
    for n in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            break
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        assert time.monotonic() < deadline, "Xvfb did not start"
        time.sleep(0.05)
    yield f":{n}"
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def xvfb():
    yield from _xvfb(1024, 600)


@pytest.fixture
def xvfb_wide():
    yield from _xvfb(1600, 900)


def screenshot(display: str, out: Path, size: str = "1024x600") -> np.ndarray:
    import cv2

    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "x11grab", "-video_size", size, "-i", display,
                    "-frames:v", "1", str(out)], check=True, timeout=30)
    return cv2.imread(str(out))


def last_frame(log: Path) -> dict | None:
    rows = track_rows(log)
    return rows[-1] if rows else None


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_window_shows_named_boxes_and_the_overlay(xvfb, enrolled_env, media_dir, tmp_path):
    log = tmp_path / "tracks.jsonl"
    env = {**os.environ, "DISPLAY": xvfb, "QT_QPA_PLATFORM": "xcb"}
    proc = subprocess.Popen([sys.executable, "-m", "app", "--env", str(enrolled_env), "run", "--source",
                             str(media_dir / "video/short_hamilton_clip.mp4"), "--log-tracks", str(log)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # wait until Lin-Manuel Miranda's close-up (frames 86-220) is on screen and named
        deadline = time.monotonic() + 150
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            row = last_frame(log)
            if row and row["frame"] >= 120 and any(f["name"] == "lin_manuel_miranda" for f in row["faces"]):
                break
            assert time.monotonic() < deadline, "the pipeline never showed a named face"
            time.sleep(0.1)
        for _ in range(10):  # X may not have drawn the newest picture yet: look again, as a person would
            shot = screenshot(xvfb, tmp_path / "window.png")
            if ((shot.max(axis=2) > 20).sum(axis=0) > 100).sum() > 600:  # a window's width of lit columns
                break
            time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"fs_{proc.pid}_")]

    # the window: the lit part of the screen (rows and columns with many lit pixels, not X's cursor) is about
    # the video's size
    lit = shot.max(axis=2) > 20
    ys, xs = np.nonzero(lit.sum(axis=1) > 100)[0], np.nonzero(lit.sum(axis=0) > 100)[0]
    assert len(ys) and len(xs), f"no window on the screen; the run said: {err[-2000:]}"
    y0, x0 = ys.min(), xs.min()
    assert 600 <= xs.max() - x0 + 1 <= 700 and 330 <= ys.max() - y0 + 1 <= 400
    win = shot[y0:, x0:]
    # a named box: the label and box in Lin-Manuel Miranda's own colour
    colour = np.array(colour_for("lin_manuel_miranda"))
    named = np.all(np.abs(win.astype(int) - colour) <= 12, axis=2).sum()
    assert named > 300, f"only {named} pixels in the name's colour"
    # the overlay: light text on the darkened bottom-left panel. The panel darkens the video to at most 90, so
    # anything brighter than 180 there is text (the raw video has at most ~600 such pixels there, a real
    # overlay ~2500)
    panel = win[360 - 130:360, :330]
    light = np.all(panel > 180, axis=2).sum()
    assert light > 1000, f"only {light} light pixels where the overlay should be"
    keep = os.environ.get("FACESTREAM_SCREENSHOTS")  # to look at it yourself
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "window.png", Path(keep) / "window.png")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_streams_share_one_window_side_by_side_each_with_its_names(xvfb_wide, enrolled_env, media_dir,
                                                                         tmp_path):
    """VIDEO_SOURCE with two entries: one window, a tile per stream at the streams' own size, boxes and names
    drawn in each tile, the overlay once for the whole window."""
    clip = str(media_dir / "video/short_hamilton_clip.mp4")
    log = tmp_path / "tracks.jsonl"
    env = {**os.environ, "DISPLAY": xvfb_wide, "QT_QPA_PLATFORM": "xcb"}
    proc = subprocess.Popen([sys.executable, "-m", "app", "--env", str(enrolled_env), "run", "--source",
                             f"{clip},{clip}", "--log-tracks", str(log)],  # every frame: lasts ~40 s here
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 200
        named: set[int] = set()
        while len(named) < 2:  # both streams have shown Lin-Manuel Miranda named
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the two streams never both showed a named face"
            named = {r["stream"] for r in track_rows(log)[-40:] if r["frame"] >= 120 and
                     any(f["name"] == "lin_manuel_miranda" for f in r["faces"])}
            time.sleep(0.1)
        for _ in range(10):  # X may not have drawn the newest picture yet: look again, as a person would
            time.sleep(0.3)
            shot = screenshot(xvfb_wide, tmp_path / "mosaic.png", "1600x900")
            if ((shot.max(axis=2) > 20).sum(axis=0) > 100).sum() > 1200:  # both tiles lit
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    keep = os.environ.get("FACESTREAM_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "mosaic.png", Path(keep) / "mosaic.png")
    lit = shot.max(axis=2) > 20  # rows and columns with many lit pixels: the window, not X's cursor
    ys, xs = np.nonzero(lit.sum(axis=1) > 100)[0], np.nonzero(lit.sum(axis=0) > 100)[0]
    assert len(ys) and len(xs), f"no window on the screen; the run said: {err[-2000:]}"
    y0, x0 = ys.min(), xs.min()
    assert 1240 <= xs.max() - x0 + 1 <= 1320 and 330 <= ys.max() - y0 + 1 <= 400  # two 640x360 tiles
    win = shot[y0:y0 + 360, x0:x0 + 1280]
    colour = np.array(colour_for("lin_manuel_miranda"))
    for k, tile in enumerate((win[:, :640], win[:, 640:])):
        named_px = np.all(np.abs(tile.astype(int) - colour) <= 12, axis=2).sum()
        assert named_px > 200, f"tile {k}: only {named_px} pixels in the name's colour"
