"""Draw faces and the performance overlay on a frame (in place), like supervision's annotators."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from app.display.blur import hide_faces
from app.display.layout import place_labels, visible_dots
from app.settings import OVERLAY_MODES
from app.types import UNKNOWN, Faces

FONT = cv2.FONT_HERSHEY_SIMPLEX
UNKNOWN_COLOUR = (40, 40, 230)  # BGR red


@lru_cache(maxsize=4096)
def colour_for(key: str) -> tuple[int, int, int]:
    """A stable, saturated BGR colour per name (so a person keeps one colour across runs)."""
    h = (sum(ord(c) * 31**i for i, c in enumerate(key)) % 180)
    hsv = np.uint8([[[h, 200, 230]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


PANEL_SHADE = 0.5  # the video under a panel keeps half its brightness: translucent, and the text still reads


@dataclass
class Overlay:
    """The pipeline's health as text: ``lines`` for the full panel (a line per stage), ``compact`` for the
    one or two short lines shown by default (the full panel's first two lines where it is empty)."""

    lines: list[str] = field(default_factory=list)
    warn: bool = False  # the first line drawn in red (e.g. source reconnecting)
    compact: list[str] = field(default_factory=list)

    def text(self, mode: str) -> list[str]:
        """The lines shown in ``mode`` (full, compact or off)."""
        if mode == "full":
            return self.lines
        if mode == "compact":
            return self.compact or self.lines[:2]
        return []


def next_mode(mode: str) -> str:
    """The overlay mode after ``mode`` (the window's o key)."""
    return OVERLAY_MODES[(OVERLAY_MODES.index(mode) + 1) % len(OVERLAY_MODES)] if mode in OVERLAY_MODES else "full"


def render_label(text: str, colour: tuple[int, int, int], scale: float) -> np.ndarray:
    """A label patch: the text in white (anti-aliased) on a block of the box's colour."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    patch = np.empty((th + base + 4, tw + 6, 3), np.uint8)
    patch[:] = colour
    cv2.putText(patch, text, (3, th + 2), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return patch


def paste(img: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    """Copy ``patch`` with its top-left at (x, y), clipped to ``img``."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + patch.shape[1], w), min(y + patch.shape[0], h)
    if x1 > x0 and y1 > y0:
        img[y0:y1, x0:x1] = patch[y0 - y : y1 - y, x0 - x : x1 - x]


class Renderer:
    """Boxes with name, similarity and track id; an overlay panel of the pipeline's health (``overlay``: its
    mode, full, compact or off); other panels (help, paused) on request."""

    LABELS = 1024  # label patches kept: names, similarities and track ids repeat from frame to frame

    def __init__(self, show_landmarks: bool = True, overlay: str = "compact", blur: str = "none") -> None:
        self.show_landmarks = show_landmarks
        self.overlay = overlay
        self.blur = blur  # PRIVACY_BLUR: none, unknown or all (app/display/blur.py)
        # putText with anti-aliasing is most of the drawing cost at 1080p (measured: about half of it), so
        # each label and the panels' text are drawn once and pasted on the frames that show them again
        self._labels: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._panels: dict[str, tuple[tuple, np.ndarray]] = {}

    def _label(self, text: str, colour: tuple[int, int, int], scale: float) -> np.ndarray:
        key = (text, colour, scale)
        patch = self._labels.get(key)
        if patch is None:
            patch = self._labels[key] = render_label(text, colour, scale)
            if len(self._labels) > self.LABELS:
                self._labels.popitem(last=False)
        else:
            self._labels.move_to_end(key)
        return patch

    def draw(self, frame: np.ndarray, faces: Faces, overlay: Overlay | None = None) -> np.ndarray:
        """Boxes first, then landmark dots clear of every label, then the labels (placed inside the frame and
        apart from each other), then the overlay."""
        hidden = hide_faces(frame, faces, self.blur) if self.blur != "none" else []  # before any drawing
        h, w = frame.shape[:2]
        scale = max(0.4, min(1.0, h / 900))
        thick = max(1, int(round(h / 400)))
        boxes = np.rint(faces.boxes).astype(np.int64).tolist()  # one conversion per frame, not per number
        points = np.asarray(faces.landmarks).astype(np.int64).tolist() if self.show_landmarks else []
        sims = faces.similarities.tolist() if faces.similarities is not None else None
        tids = faces.track_ids.tolist() if faces.track_ids is not None else None
        patches = []
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            name = faces.names[i] if i < len(faces.names) else UNKNOWN
            colour = UNKNOWN_COLOUR if name == UNKNOWN else colour_for(name)
            cv2.rectangle(frame, (x1, y1), (x2, y2), colour, thick)  # axis-aligned: anti-aliasing adds nothing
            parts = [name.replace("_", " ")]
            if sims is not None and name != UNKNOWN:
                parts.append(f"{sims[i]:.2f}")
            if tids is not None and tids[i] >= 0:
                parts.append(f"#{tids[i]}")
            patches.append(self._label(" ".join(parts), colour, scale))
        rects = place_labels(boxes, [(p.shape[1], p.shape[0]) for p in patches], w, h)
        dot = max(1, thick)
        for i, face in enumerate(points):
            if i in hidden:  # a hidden face's landmarks would still show its pose and features' places
                continue
            for (px, py), show in zip(face, visible_dots(face, dot, rects)):
                if show:
                    cv2.circle(frame, (px, py), dot, (0, 255, 255), -1, cv2.LINE_AA)
        for patch, rect in zip(patches, rects):
            if rect is not None:
                paste(frame, patch, rect[0], rect[1])
        if overlay is not None:
            self.draw_overlay(frame, overlay, scale)
        return frame

    def draw_overlay(self, frame: np.ndarray, overlay: Overlay, scale: float) -> None:
        """The stats panel bottom-left, in this renderer's mode (nothing when off)."""
        lines = overlay.text(self.overlay)
        if lines:
            self.draw_panel(frame, "stats", lines, scale * 0.8, "bottom-left", warn=overlay.warn)

    def draw_panel(self, frame: np.ndarray, kind: str, lines: list[str], scale: float, where: str,
                   warn: bool = False) -> None:
        """Translucent panel of ``lines`` at ``where`` (bottom-left, centre or bottom-right): the frame darkened under
        it, the text added on top (its layer is cached per ``kind`` until the lines change)."""
        height, width = frame.shape[:2]
        key = (tuple(lines), warn, scale, height, width)
        cached = self._panels.get(kind)
        if cached is None or cached[0] != key:
            cached = self._panels[kind] = (key, render_panel(lines, warn, scale, height, width))
        text = cached[1]
        th, tw = text.shape[:2]
        x, y = {"bottom-left": (0, height - th), "centre": ((width - tw) // 2, (height - th) // 2),
                "bottom-right": (width - tw, height - th)}[where]
        roi = frame[y:y + th, x:x + tw]
        cv2.convertScaleAbs(roi, roi, alpha=PANEL_SHADE)  # darken: uint8 in, uint8 out (5x numpy's float path)
        cv2.max(roi, text, roi)  # light text over the darkened frame, its anti-aliased edges included


def render_panel(lines: list[str], warn: bool, scale: float, height: int, width: int) -> np.ndarray:
    """The text layer of a panel: light text on black, at most the frame's size."""
    sizes = [cv2.getTextSize(t, FONT, scale, 2 if warn and i == 0 else 1)[0] for i, t in enumerate(lines)]
    line_h = max(sz[1] for sz in sizes) + 6
    w = min(max(sz[0] for sz in sizes) + 12, width)
    hgt = min(line_h * len(lines) + 8, height)
    text = np.zeros((hgt, w, 3), np.uint8)
    for i, line in enumerate(lines):
        alarm = warn and i == 0  # a source or gallery outage: bold red, to be seen even in the compact panel
        colour = (80, 80, 255) if alarm else (255, 255, 255)
        cv2.putText(text, line, (6, (i + 1) * line_h), FONT, scale, colour, 2 if alarm else 1, cv2.LINE_AA)
    return text
