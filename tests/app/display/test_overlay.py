"""The stats overlay: compact by default (small and translucent), full on request, off entirely."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from app.display.annotate import Overlay, Renderer, next_mode
from app.display.stats_text import compact_lines
from app.types import Faces

STAGES = ["capture", "detect", "align", "embed+track", "identify", "display"]
FULL = ["cam0", *(f"{s}: 29.9 fps  busy  40%  q 2  drops 0  lat p50 35 p99 60 ms" for s in STAGES),
        "capture->display latency p50 48 ms  p99 90 ms"]


def overlay() -> Overlay:
    stats = [SimpleNamespace(name=s, fps=29.9, drops=0) for s in STAGES]
    return Overlay(FULL, compact=compact_lines(stats, 48, 90))


def panel_extent(mode: str) -> tuple[int, int, np.ndarray]:
    """(width, height) of what the overlay changed on a mid-grey 640x360 frame, and that frame."""
    frame = np.full((360, 640, 3), 128, np.uint8)
    Renderer(overlay=mode).draw(frame, Faces.empty(), overlay())
    changed = (frame != 128).any(axis=2)
    if not changed.any():
        return 0, 0, frame
    ys, xs = np.nonzero(changed)
    return xs.max() - xs.min() + 1, ys.max() - ys.min() + 1, frame


def test_compact_is_two_short_lines_in_the_bottom_left_corner():
    w, h, frame = panel_extent("compact")
    assert w <= 0.45 * 640 and h <= 0.12 * 360  # the old panel covered about 45 % x 35 %
    assert (frame[360 - h:, :w] != 128).any()  # bottom-left
    assert not (frame[: 360 - h] != 128).any()


def test_full_shows_every_stage_and_is_much_taller_than_compact():
    w, h, _ = panel_extent("full")
    cw, ch, _ = panel_extent("compact")
    assert h >= 3 * ch and w > cw


@pytest.mark.parametrize("mode", ["compact", "full"])
def test_panels_are_translucent(mode):
    """The video stays visible under the panel: darkened, not blacked out."""
    w, h, frame = panel_extent(mode)
    under = frame[360 - h:, :w]
    text = (under > 200).all(axis=2)
    background = under[~text]
    assert np.median(background) >= 50  # grey 128 shaded, not black
    assert np.median(background) < 128  # and darker, so the light text reads


def test_off_draws_nothing():
    assert panel_extent("off")[:2] == (0, 0)


def test_the_o_key_cycles_compact_full_off():
    assert [next_mode("compact"), next_mode("full"), next_mode("off")] == ["full", "off", "compact"]


def test_compact_lines_condense_the_stages():
    stats = [SimpleNamespace(name="capture0", fps=30.0, drops=3), SimpleNamespace(name="capture1", fps=29.6, drops=3),
             SimpleNamespace(name="detect", fps=59.4, drops=1), SimpleNamespace(name="embed+track", fps=59.0, drops=0)]
    rates, latency = compact_lines(stats, 41.6, 88.2)
    assert rates == "cap 60 | det 59 | emb 59 fps"  # two streams' captures added: what the stages after them see
    assert latency == "latency 42 ms (p99 88)  drops 4"  # the captures' shared queue counted once


def test_an_overlay_without_compact_lines_shows_its_first_two():
    assert Overlay(["a", "b", "c"]).text("compact") == ["a", "b"]
    assert Overlay(["a", "b", "c"]).text("off") == []
