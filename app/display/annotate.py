"""Draw faces and the performance overlay on a frame (in place), like supervision's annotators."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from app.types import UNKNOWN, Faces

FONT = cv2.FONT_HERSHEY_SIMPLEX
UNKNOWN_COLOUR = (40, 40, 230)  # BGR red


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


def _label(img: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float) -> None:
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    y0 = max(y - th - base - 4, 0)
    cv2.rectangle(img, (x, y0), (x + tw + 6, y0 + th + base + 4), colour, -1)
    cv2.putText(img, text, (x + 3, y0 + th + 2), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


class Renderer:
    """Boxes with name, similarity and track id; an overlay panel of the pipeline's health."""

    def __init__(self, show_landmarks: bool = True) -> None:
        self.show_landmarks = show_landmarks

    def draw(self, frame: np.ndarray, faces: Faces, overlay: Overlay | None = None) -> np.ndarray:
        h = frame.shape[0]
        scale = max(0.4, min(1.0, h / 900))
        thick = max(1, int(round(h / 400)))
        for i in range(len(faces)):
            x1, y1, x2, y2 = (int(round(v)) for v in faces.boxes[i])
            name = faces.names[i] if i < len(faces.names) else UNKNOWN
            colour = UNKNOWN_COLOUR if name == UNKNOWN else colour_for(name)
            cv2.rectangle(frame, (x1, y1), (x2, y2), colour, thick, cv2.LINE_AA)
            parts = [name.replace("_", " ")]
            if faces.similarities is not None and name != UNKNOWN:
                parts.append(f"{faces.similarities[i]:.2f}")
            if faces.track_ids is not None and faces.track_ids[i] >= 0:
                parts.append(f"#{int(faces.track_ids[i])}")
            _label(frame, " ".join(parts), x1, y1, colour, scale)
            if self.show_landmarks:
                for px, py in faces.landmarks[i]:
                    cv2.circle(frame, (int(px), int(py)), max(1, thick), (0, 255, 255), -1, cv2.LINE_AA)
        if overlay and overlay.lines:
            self.draw_overlay(frame, overlay, scale)
        return frame

    @staticmethod
    def draw_overlay(frame: np.ndarray, overlay: Overlay, scale: float) -> None:
        s = scale * 0.8
        sizes = [cv2.getTextSize(t, FONT, s, 1)[0] for t in overlay.lines]
        line_h = max(sz[1] for sz in sizes) + 6
        w = max(sz[0] for sz in sizes) + 12
        hgt = line_h * len(overlay.lines) + 8
        w, hgt = min(w, frame.shape[1]), min(hgt, frame.shape[0])
        top = frame.shape[0] - hgt  # bottom-left: faces are mostly in the upper half of a frame
        roi = frame[top:, :w]
        roi[:] = (roi * 0.35).astype(np.uint8)
        for i, text in enumerate(overlay.lines):
            colour = (80, 80, 255) if overlay.warn and i == 0 else (255, 255, 255)
            cv2.putText(frame, text, (6, top + (i + 1) * line_h), FONT, s, colour, 1, cv2.LINE_AA)
