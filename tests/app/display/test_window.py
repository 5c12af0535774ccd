"""A real OpenCV window under Xvfb: start `facestream run`, take a screenshot, check what a person would see."""

from __future__ import annotations

import json
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

pytestmark = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("ffmpeg")),
                                reason="needs Xvfb and ffmpeg (scripts/setup.sh installs them)")


@pytest.fixture
def xvfb():
    for n in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            break
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1024x600x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        assert time.monotonic() < deadline, "Xvfb did not start"
        time.sleep(0.05)
    yield f":{n}"
    proc.terminate()
    proc.wait(5)


def screenshot(display: str, out: Path) -> np.ndarray:
    import cv2

    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "x11grab", "-video_size", "1024x600", "-i", display,
                    "-frames:v", "1", str(out)], check=True, timeout=30)
    return cv2.imread(str(out))


def last_frame(log: Path) -> dict | None:
    lines = log.read_text().splitlines() if log.exists() else []
    return json.loads(lines[-1]) if lines else None


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
        shot = screenshot(xvfb, tmp_path / "window.png")
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"fs_{proc.pid}_")]

    # the window: the non-black part of the screen is about the video's size
    ys, xs = np.nonzero(shot.max(axis=2) > 20)
    y0, x0 = ys.min(), xs.min()
    assert 600 <= xs.max() - x0 + 1 <= 700 and 330 <= ys.max() - y0 + 1 <= 400
    win = shot[y0:, x0:]
    # a named box: the label and box in Lin-Manuel Miranda's own colour
    colour = np.array(colour_for("lin_manuel_miranda"))
    named = np.all(np.abs(win.astype(int) - colour) <= 12, axis=2).sum()
    assert named > 300, f"only {named} pixels in the name's colour"
    # the overlay: white text lines in the bottom-left panel (the raw video has no white there)
    panel = win[360 - 130:360, :330]
    white = np.all(panel > 225, axis=2).sum()
    assert white > 400, f"only {white} white pixels where the overlay should be"
    keep = os.environ.get("FACESTREAM_SCREENSHOTS")  # to look at it yourself
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "window.png", Path(keep) / "window.png")
