"""Draw faces and the performance overlay on a frame (in place), like supervision's annotators."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

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


@dataclass
class Overlay:
    """Text lines of the bottom-left panel: source status, per-stage FPS / queue / drops, latency."""

    lines: list[str] = field(default_factory=list)
    warn: bool = False  # drawn in red (e.g. source reconnecting)


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
    """Boxes with name, similarity and track id; an overlay panel of the pipeline's health."""

    LABELS = 1024  # label patches kept: names, similarities and track ids repeat from frame to frame

    def __init__(self, show_landmarks: bool = True) -> None:
        self.show_landmarks = show_landmarks
        # putText with anti-aliasing is most of the drawing cost at 1080p (measured: about half of it), so
        # each label and the overlay's text are drawn once and pasted on the frames that show them again
        self._labels: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._panel: tuple[tuple, np.ndarray] | None = None

    def _label(self, img: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int],
               scale: float) -> None:
        key = (text, colour, scale)
        patch = self._labels.get(key)
        if patch is None:
            patch = self._labels[key] = render_label(text, colour, scale)
            if len(self._labels) > self.LABELS:
                self._labels.popitem(last=False)
        else:
            self._labels.move_to_end(key)
        paste(img, patch, x, max(y - patch.shape[0], 0))

    def draw(self, frame: np.ndarray, faces: Faces, overlay: Overlay | None = None) -> np.ndarray:
        h = frame.shape[0]
        scale = max(0.4, min(1.0, h / 900))
        thick = max(1, int(round(h / 400)))
        boxes = np.rint(faces.boxes).astype(np.int64).tolist()  # one conversion per frame, not per number
        points = np.asarray(faces.landmarks).astype(np.int64).tolist() if self.show_landmarks else []
        sims = faces.similarities.tolist() if faces.similarities is not None else None
        tids = faces.track_ids.tolist() if faces.track_ids is not None else None
        dot = max(1, thick)
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            name = faces.names[i] if i < len(faces.names) else UNKNOWN
            colour = UNKNOWN_COLOUR if name == UNKNOWN else colour_for(name)
            cv2.rectangle(frame, (x1, y1), (x2, y2), colour, thick)  # axis-aligned: anti-aliasing adds nothing
            parts = [name.replace("_", " ")]
            if sims is not None and name != UNKNOWN:
                parts.append(f"{sims[i]:.2f}")
            if tids is not None and tids[i] >= 0:
                parts.append(f"#{tids[i]}")
            self._label(frame, " ".join(parts), x1, y1, colour, scale)
            for px, py in points[i] if points else ():
                cv2.circle(frame, (px, py), dot, (0, 255, 255), -1, cv2.LINE_AA)
        if overlay and overlay.lines:
            self.draw_overlay(frame, overlay, scale)
        return frame

    def draw_overlay(self, frame: np.ndarray, overlay: Overlay, scale: float) -> None:
        """The panel bottom-left: the frame darkened under it, the text added on top (its layer is cached
        until the lines change, every half second)."""
        key = (tuple(overlay.lines), overlay.warn, scale, frame.shape[0], frame.shape[1])
        if self._panel is None or self._panel[0] != key:
            self._panel = (key, self._render_panel(overlay, scale, frame.shape[0], frame.shape[1]))
        text = self._panel[1]
        roi = frame[frame.shape[0] - text.shape[0]:, : text.shape[1]]
        cv2.convertScaleAbs(roi, roi, alpha=0.35)  # darken: uint8 in, uint8 out (5x numpy's float path)
        cv2.max(roi, text, roi)  # light text over the darkened frame, its anti-aliased edges included

    @staticmethod
    def _render_panel(overlay: Overlay, scale: float, height: int, width: int) -> np.ndarray:
        s = scale * 0.8
        sizes = [cv2.getTextSize(t, FONT, s, 1)[0] for t in overlay.lines]
        line_h = max(sz[1] for sz in sizes) + 6
        w = min(max(sz[0] for sz in sizes) + 12, width)
        hgt = min(line_h * len(overlay.lines) + 8, height)
        text = np.zeros((hgt, w, 3), np.uint8)
        for i, line in enumerate(overlay.lines):
            colour = (80, 80, 255) if overlay.warn and i == 0 else (255, 255, 255)
            cv2.putText(text, line, (6, (i + 1) * line_h), FONT, s, colour, 1, cv2.LINE_AA)
        return text
