"""The window's behaviour without X: keys (overlay, pause, help), and a file paced to its frame rate with no
frame dropped. A stand-in window records what it was shown and plays back keys at given moments."""

from __future__ import annotations

import time

import numpy as np
import pytest

from app.display.annotate import Overlay
from app.display.present import OutputOptions, Present
from app.types import Faces, FrameRef


class FakeWindow:
    """Window's interface: ``show`` / ``pump`` return False after a quit; ``script`` is a list of
    (seconds since the first picture, key) pressed once that time has passed."""

    def __init__(self, script: list[tuple[float, str]] | None = None) -> None:
        self.keys: list[str] = []
        self.shown: list[np.ndarray] = []
        self.script = sorted(script or [])
        self.start: float | None = None
        self.quit = False

    def show(self, frame: np.ndarray) -> bool:
        self.shown.append(frame.copy())
        if self.start is None:
            self.start = time.monotonic()
        return self.pump()

    def pump(self, wait_ms: int = 1) -> bool:
        time.sleep(wait_ms / 1000)
        now = time.monotonic() - (self.start or time.monotonic())
        while self.script and self.script[0][0] <= now:
            key = self.script.pop(0)[1]
            if key == "q":
                self.quit = True
            else:
                self.keys.append(key)
        return not self.quit

    def close(self) -> None:
        pass


def present(window: FakeWindow, fps: float = 50.0, pace: bool = True, **kw) -> Present:
    p = Present(OutputOptions(fps=fps, pace=pace, **kw))
    p.window = window  # what options.window=True would open, without X
    return p


def play(p: Present, n: int, size=(120, 160)) -> list[float]:
    """Send ``n`` frames (each a distinct grey) as fast as possible; the times they were handed over."""
    times = []
    for i in range(n):
        frame = np.full((*size, 3), 10 + i, np.uint8)
        assert p(frame, FrameRef(seq=i, ts=time.time(), index=i), Faces.empty(), Overlay(["x"] * 5))
        times.append(time.monotonic())
    return times


@pytest.mark.timeout(30)
def test_a_file_in_a_window_plays_at_its_frame_rate_and_shows_every_frame():
    window = FakeWindow()
    times = play(present(window, fps=50.0), 26)
    assert len(window.shown) == 26  # nothing dropped
    assert [int(f[60, 100, 0]) for f in window.shown] == [10 + i for i in range(26)]  # in order
    assert times[-1] - times[0] >= 25 / 50 * 0.95  # not faster than 50 fps ...
    assert times[-1] - times[0] < 25 / 50 + 1.0  # ... and not held up either
    # never ahead of the file's clock (which starts as frame 0 is drawn, a few ms before ``times[0]``)
    assert all(t - times[0] >= i / 50 - 0.01 for i, t in enumerate(times))


@pytest.mark.timeout(30)
def test_late_frames_are_shown_at_once_and_never_in_a_burst():
    """Processing stalls for 150 ms (50 fps file), then the frames held up arrive all at once: the first is shown
    at once, the others a frame's time apart again, not all together to catch up."""
    window = FakeWindow()
    p = present(window, fps=50.0)
    came, done = [], []
    for i in range(12):
        if i == 5:
            time.sleep(0.15)
        came.append(time.monotonic())
        assert p(np.zeros((120, 160, 3), np.uint8), FrameRef(seq=i, ts=0.0, index=i), Faces.empty())
        done.append(time.monotonic())
    assert done[5] - came[5] < 0.03  # no wait for a time already past
    assert all(done[k] - done[5] >= (k - 5) / 50 - 0.01 for k in range(6, 12))


@pytest.mark.timeout(30)
def test_without_pacing_frames_go_as_fast_as_they_come():
    window = FakeWindow()
    times = play(present(window, fps=5.0, pace=False), 10)
    assert times[-1] - times[0] < 9 / 5 / 2  # far faster than 5 fps


@pytest.mark.timeout(30)
def test_space_pauses_a_file_and_resumes_without_rushing():
    window = FakeWindow([(0.1, " "), (0.9, " ")])  # paused from 0.1 s to 0.9 s
    p = present(window, fps=40.0)
    times = play(p, 20)
    assert times[-1] - times[0] >= 19 / 40 + 0.7  # the pause added its time
    after = [t for t in times if t - times[0] > 1.0]
    gaps = np.diff(after)
    assert len(gaps) >= 3 and gaps.min() > 0.5 / 40  # after the pause: paced again, no burst of catch-up frames
    assert not p.paused and p.waited >= 0.7
    banner = [f for f in window.shown if (f[-30:, 80:] > 200).all(axis=2).any()]
    assert banner  # the "paused" line was shown while paused


@pytest.mark.timeout(30)
def test_space_does_not_pause_a_live_source():
    window = FakeWindow([(0.0, " ")])
    p = present(window, pace=False)
    play(p, 5)
    assert not p.paused


@pytest.mark.timeout(30)
def test_o_cycles_the_overlay_and_redraws_at_once():
    window = FakeWindow([(0.0, "o")])
    p = present(window, pace=False)
    assert p.renderer.overlay == "compact"
    play(p, 1, size=(360, 640))
    assert p.renderer.overlay == "full"
    assert len(window.shown) == 2  # the frame, then the same frame with the full panel
    lit = [int((f[200:, :320] > 200).all(axis=2).sum()) for f in window.shown]
    assert lit[1] > lit[0]  # more text: five lines instead of two


@pytest.mark.timeout(30)
def test_help_is_shown_in_the_window_only(tmp_path):
    window = FakeWindow([(0.0, "h")])
    p = present(window, pace=False, out=str(tmp_path / "a.avi"))
    play(p, 3, size=(360, 640))
    assert p.help
    centre = [int((f[120:240, 200:440] > 200).all(axis=2).sum()) for f in window.shown]
    assert centre[0] == 0 and centre[-1] > 200  # the help panel's text in the middle of the window
    p.close()
    import cv2

    cap = cv2.VideoCapture(str(tmp_path / "a.avi"))
    for _ in range(3):
        ok, f = cap.read()
        assert ok and (f[120:240, 200:440] > 200).all(axis=2).sum() == 0  # never in the file


def test_help_names_every_key():
    p = present(FakeWindow(), pace=True)
    text = "\n".join(p.help_lines())
    for key in ("o", "space", "h or ?", "q or Esc"):
        assert key in text
    assert "space" not in "\n".join(present(FakeWindow(), pace=False).help_lines())  # live: no pause


@pytest.mark.timeout(30)
def test_a_paused_window_lets_the_pipeline_stop():
    window = FakeWindow([(0.0, " ")])
    p = present(window, fps=30.0)
    play(p, 1)
    assert p.paused
    p.stopping = lambda: True
    t = time.monotonic()
    assert p(np.zeros((120, 160, 3), np.uint8), FrameRef(seq=1, ts=0.0, index=1), Faces.empty())
    assert time.monotonic() - t < 0.5


@pytest.mark.timeout(30)
def test_q_while_paced_quits():
    window = FakeWindow([(0.05, "q")])
    p = present(window, fps=2.0)
    results = []
    for i in range(3):
        results.append(p(np.zeros((120, 160, 3), np.uint8), FrameRef(seq=i, ts=0.0, index=i), Faces.empty()))
        if not results[-1]:
            break
    assert results[-1] is False and len(results) == 2  # the wait for frame 1 (0.5 s) ended at the key
