"""Several streams in one picture: a grid of tiles, each the latest annotated frame of one stream.

A tile is the frame resized first and annotated after (boxes scaled to the tile), so names stay readable
however many streams share the window, and a 1080p frame costs one resize, not a full-size drawing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import cv2
import numpy as np

from app.display.annotate import Overlay, Renderer, paste, render_label
from app.types import Faces


def grid(n: int) -> tuple[int, int]:
    """(columns, rows) of the most square grid holding ``n`` tiles, wider than tall."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return cols, max(1, math.ceil(n / cols))


#: the largest mosaic drawn: a full-HD screen
MAX_MOSAIC = (1920, 1080)


def mosaic_size(sizes: dict[int, tuple[int, int]], n: int) -> tuple[int, int]:
    """(width, height) of a mosaic of ``n`` streams: a grid of tiles the size of the largest stream's frames,
    scaled down (never up) to fit MAX_MOSAIC. Without sizes, MAX_MOSAIC."""
    if not sizes:
        return MAX_MOSAIC
    cols, rows = grid(n)
    w, h = max(s[0] for s in sizes.values()), max(s[1] for s in sizes.values())
    k = min(1.0, MAX_MOSAIC[0] / (cols * w), MAX_MOSAIC[1] / (rows * h))
    return int(cols * w * k), int(rows * h * k)


def scaled(faces: Faces, s: float) -> Faces:
    """The same faces with boxes and landmarks in a frame resized by ``s``."""
    return replace(faces, boxes=faces.boxes * s, landmarks=faces.landmarks * s)


def shrink(frame: np.ndarray, tw: int, th: int) -> np.ndarray:
    """``frame`` resized to (tw, th): halved with area averaging while more than twice too big (OpenCV's fast
    path for exact halves, 0.3 ms for 1080p here), then bilinear for the rest (at most 2:1). Plain INTER_AREA
    at 1/3 costs 4x that."""
    h, w = frame.shape[:2]
    while w >= 2 * tw and h >= 2 * th and w % 2 == 0 and h % 2 == 0:
        frame = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = frame.shape[:2]
    if (w, h) == (tw, th):
        return frame
    return cv2.resize(frame, (tw, th), interpolation=cv2.INTER_LINEAR)  # at most 2:1 left: no aliasing to speak of


class Mosaic:
    """A ``size`` (width, height) canvas cut into one tile per stream, in stream order."""

    def __init__(self, names: dict[int, str], size: tuple[int, int] = (1920, 1080)) -> None:
        self.names = names
        self.order = {s: k for k, s in enumerate(sorted(names))}
        self.cols, self.rows = grid(len(names))
        self.tile_w, self.tile_h = size[0] // self.cols, size[1] // self.rows
        self.canvas = np.zeros((self.tile_h * self.rows, self.tile_w * self.cols, 3), np.uint8)
        # white on black, drawn once, pasted on every frame
        self.labels = {s: render_label(f"{s}: {n}", (0, 0, 0), 0.5) for s, n in names.items()}
        for stream in names:
            self._label(stream, self._tile(stream))

    def _tile(self, stream: int) -> np.ndarray:
        k = self.order[stream]
        r, c = divmod(k, self.cols)
        return self.canvas[r * self.tile_h:(r + 1) * self.tile_h, c * self.tile_w:(c + 1) * self.tile_w]

    def _label(self, stream: int, tile: np.ndarray) -> None:
        paste(tile, self.labels[stream], 0, 0)

    def put(self, stream: int, frame: np.ndarray, faces: Faces | None, renderer: Renderer | None = None,
            still_valid: Callable[[], bool] | None = None) -> bool:
        """Place ``frame`` in its stream's tile, fitted with its aspect kept; draw ``faces`` on the tile if
        given (None: the frame is annotated already). ``frame`` may be a view of shared memory: if
        ``still_valid()`` says it was overwritten while being shrunk, the tile is left as it was (False)."""
        h, w = frame.shape[:2]
        s = min(self.tile_w / w, self.tile_h / h)
        tw, th = max(1, int(w * s)), max(1, int(h * s))
        small = shrink(frame, tw, th)
        if still_valid is not None and not still_valid():  # resized first: a torn frame never reaches the tile
            return False
        tile = self._tile(stream)
        x0, y0 = (self.tile_w - tw) // 2, (self.tile_h - th) // 2
        if (tw, th) != (self.tile_w, self.tile_h):
            tile[:] = 0
        roi = tile[y0:y0 + th, x0:x0 + tw]
        roi[:] = small
        if faces is not None and renderer is not None and len(faces):
            renderer.draw(roi, scaled(faces, s))
        self._label(stream, tile)
        return True

    def compose(self, renderer: Renderer, overlay: Overlay | None) -> np.ndarray:
        """A copy of the canvas with the pipeline overlay drawn on it (the canvas itself stays clean)."""
        out = self.canvas.copy()
        if overlay and overlay.lines:
            renderer.draw_overlay(out, overlay, max(0.4, min(1.0, out.shape[0] / 900)))
        return out
