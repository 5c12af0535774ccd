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


def press(display: str, *keys: str) -> None:
    """Type ``keys`` into the facestream window, as a person would (focus it, then real key events)."""
    env = {**os.environ, "DISPLAY": display}
    wid = subprocess.run(["xdotool", "search", "--name", "^facestream$"], env=env, capture_output=True, text=True,
                         timeout=10).stdout.split()
    assert wid, "no facestream window to type into"
    subprocess.run(["xdotool", "windowfocus", "--sync", wid[0]], env=env, check=True, timeout=10)
    subprocess.run(["xdotool", "key", "--delay", "50", *keys], env=env, check=True, timeout=10)


def lit_window(shot: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, width, height) of the lit part of the screen (rows and columns with many lit pixels: the window,
    not X's cursor)."""
    lit = shot.max(axis=2) > 20
    ys, xs = np.nonzero(lit.sum(axis=1) > 100)[0], np.nonzero(lit.sum(axis=0) > 100)[0]
    assert len(ys) and len(xs), "no window on the screen"
    return xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


def light(img: np.ndarray) -> int:
    """Pixels of light text: a panel darkens the video to at most half, so anything this bright there is text
    (the raw video has a few hundred such pixels in the bottom-left third, a full panel thousands)."""
    return int(np.all(img > 180, axis=2).sum())


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(not shutil.which("xdotool"), reason="needs xdotool (scripts/setup.sh installs it)")
def test_window_shows_named_boxes_the_compact_overlay_and_answers_its_keys(xvfb, enrolled_env, media_dir,
                                                                            tmp_path):
    """A file in the window: named boxes and the compact overlay; space pauses (no frame goes by), o switches to
    the full panel, h shows the keys, space resumes, q quits cleanly."""
    log = tmp_path / "tracks.jsonl"
    env = {**os.environ, "DISPLAY": xvfb, "QT_QPA_PLATFORM": "xcb"}
    proc = subprocess.Popen([sys.executable, "-m", "app", "--env", str(enrolled_env), "run", "--source",
                             str(media_dir / "video/short_hamilton_clip.mp4"), "--log-tracks", str(log)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shots = {}
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
            shot = screenshot(xvfb, tmp_path / "playing.png")
            if ((shot.max(axis=2) > 20).sum(axis=0) > 100).sum() > 600:  # a window's width lit
                break
            time.sleep(0.3)
        press(xvfb, "space")  # pause: the same picture stays, so the screenshots below compare like with like
        time.sleep(1.0)
        paused_at = len(track_rows(log))
        shots["compact"] = screenshot(xvfb, tmp_path / "window.png")
        press(xvfb, "o")
        time.sleep(0.7)
        shots["full"] = screenshot(xvfb, tmp_path / "full.png")
        press(xvfb, "h")
        time.sleep(0.7)
        shots["help"] = screenshot(xvfb, tmp_path / "help.png")
        still_paused = len(track_rows(log))
        press(xvfb, "h", "space")  # hide the help, resume
        deadline = time.monotonic() + 30
        while len(track_rows(log)) <= still_paused + 5:
            assert proc.poll() is None and time.monotonic() < deadline, "playback did not resume"
            time.sleep(0.1)
        press(xvfb, "q")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    keep = os.environ.get("FACESTREAM_SCREENSHOTS")  # to look at them yourself
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for name in ("window.png", "full.png", "help.png"):
            shutil.copyfile(tmp_path / name, Path(keep) / name)
    assert proc.returncode == 0, err  # q: a clean stop
    assert "stopped:" in err  # by the key, not at the end of the file
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"fs_{proc.pid}_")]
    assert still_paused - paused_at <= 1  # paused: no frame went by while the screenshots were taken
    rows = track_rows(log)
    assert rows[-1]["frame"] < 274  # q stopped it before the end of the clip

    # the window is about the video's size
    x0, y0, w, h = lit_window(shots["compact"])
    assert 600 <= w <= 700 and 330 <= h <= 400, f"window {w}x{h}; the run said: {err[-2000:]}"
    win = {k: v[y0:y0 + 360, x0:x0 + 640] for k, v in shots.items()}
    # a named box: the label and box in Lin-Manuel Miranda's own colour
    colour = np.array(colour_for("lin_manuel_miranda"))
    named = np.all(np.abs(win["compact"].astype(int) - colour) <= 12, axis=2).sum()
    assert named > 300, f"only {named} pixels in the name's colour"
    # compact: two lines of text in the bottom-left corner, and nothing of a panel above them
    assert light(win["compact"][360 - 40:, :300]) > 150
    # paused: the picture above the panels is the same in every screenshot
    assert np.abs(win["compact"][:120].astype(int) - win["help"][:120]).mean() < 1
    # full: the panel's more lines above the compact ones; help: the keys in the middle. A panel shades the video
    # under it, so the bright pixels that appear there are its text
    for key, before, after, (rows, cols) in (("o", "compact", "full", (slice(250, 315), slice(0, 280))),
                                             ("h", "full", "help", (slice(140, 225), slice(185, 440)))):
        was, now = (np.all(win[k][rows, cols] > 180, axis=2) for k in (before, after))
        appeared = int((now & ~was).sum())
        assert appeared > 500, f"only {appeared} pixels of new text after the {key} key"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_file_in_the_window_is_paced_to_its_frame_rate(xvfb, enrolled_env, media_dir, tmp_path):
    """Every frame is processed and shown, never ahead of the file's own clock (the display waits for each
    frame's time; when processing falls behind, a frame is shown as soon as it comes and the clock restarts
    from it, so frames are never rushed through to catch up)."""
    log = tmp_path / "tracks.jsonl"
    env = {**os.environ, "DISPLAY": xvfb, "QT_QPA_PLATFORM": "xcb"}
    proc = subprocess.run([sys.executable, "-m", "app", "--env", str(enrolled_env), "run", "--source",
                           str(media_dir / "video/short_hamilton_clip.mp4"), "--log-tracks", str(log),
                           "--max-frames", "90"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr
    rows = track_rows(log)
    assert [r["frame"] for r in rows] == list(range(90))  # every frame, in order, none dropped
    shown = np.array([r["display_ts"] for r in rows])
    ahead = (np.arange(90) / 29.97 - (shown - shown[0])).max()
    assert ahead < 0.005, f"a frame was shown {ahead * 1000:.0f} ms before its time in the file"
    period = np.median(np.diff(shown))
    assert period >= 0.9 / 29.97, f"frames shown {period * 1000:.1f} ms apart (median): faster than the file"


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
                             f"{clip},{clip}", "--log-tracks", str(log), "--loop"],  # until Ctrl-C
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
        for _ in range(40):  # X may not have drawn the newest picture yet (under Xvfb a new Qt window can stay
            time.sleep(0.3)   # black for seconds): look again, as a person would, while the run goes on
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
