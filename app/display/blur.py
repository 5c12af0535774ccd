"""Privacy blur (PRIVACY_BLUR): faces not enrolled (``unknown``) or every face (``all``) made unrecognisable in place.

The face is shrunk to at most 8 x 8 pixels and stretched back (bilinear): unlike a Gaussian blur of any usual
radius, nothing finer than those 64 averages survives to be sharpened back, and it costs two resizes of the face's
box, not a kernel over its pixels; bilinear rather than blocky so no hard cell edges are left either. The box is
grown a little so hair line, ears and chin go too. Applied by the renderer before anything is drawn, so the window,
the MJPEG stream, the web view and the output file all get it; the track log is not touched (it keeps its fields).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from app.types import UNKNOWN, Faces, FrameRef

MODES = ("none", "unknown", "all")
BLOCKS = 8  # the face becomes at most 8 x 8 cells: no feature survives at that size
MARGIN = 0.15  # of the box's width and height, on every side
SNAPSHOT_MARGIN = 0.3  # copied around each face for snapshots: more than the crops' 0.2 margin


def chosen(faces: Faces, mode: str) -> list[int]:
    """Rows of ``faces`` to hide: none, the unknown ones (no name decided yet counts as unknown), or all."""
    if mode == "all":
        return list(range(len(faces)))
    if mode != "unknown":
        return []
    return [i for i in range(len(faces)) if i >= len(faces.names) or faces.names[i] == UNKNOWN]


def pixelate(frame: np.ndarray, box, blocks: int = BLOCKS, margin: float = MARGIN) -> None:
    """Pixelate ``box`` (x1, y1, x2, y2, grown by ``margin``) of ``frame`` in place, clipped to the frame."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    x0, y0 = max(0, int(x1 - mx)), max(0, int(y1 - my))
    x3, y3 = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    if x3 - x0 < 2 or y3 - y0 < 2:
        return
    roi = frame[y0:y3, x0:x3]
    small = cv2.resize(roi, (min(blocks, x3 - x0), min(blocks, y3 - y0)), interpolation=cv2.INTER_AREA)
    cv2.resize(small, (x3 - x0, y3 - y0), dst=roi, interpolation=cv2.INTER_LINEAR)


def hide_faces(frame: np.ndarray, faces: Faces, mode: str) -> list[int]:
    """Blur the faces ``mode`` hides; returns their rows."""
    rows = chosen(faces, mode)
    for i in rows:
        pixelate(frame, faces.boxes[i])
    return rows


def hidden_copy(view: np.ndarray | None, faces: Faces, mode: str,
                intact: Callable[[FrameRef], bool], full: bool = False) -> np.ndarray | None:
    """A copy of a frame's ring ``view`` for snapshots, with the faces ``mode`` hides already blurred; None when
    there is no view, no face, or the frame was rewritten while it was copied (never a torn picture).

    Only the faces and a margin around them are copied (``full``: the whole frame, for EVENTS_FULL_FRAME): the
    rest stays zero pages that are never touched. A whole 1080p copy per frame cost identify ~1 ms on the GPU
    machine and halved the every-frame rate there."""
    if view is None or not len(faces):
        return None
    if full:
        image = np.array(view)
    else:
        image = np.zeros_like(view)  # calloc'd: pages not written stay free
        h, w = view.shape[:2]
        for box in faces.boxes:
            x1, y1, x2, y2 = (float(v) for v in box[:4])
            mx, my = (x2 - x1) * SNAPSHOT_MARGIN, (y2 - y1) * SNAPSHOT_MARGIN
            l, t = max(0, int(x1 - mx)), max(0, int(y1 - my))
            r, b = min(w, int(x2 + mx) + 2), min(h, int(y2 + my) + 2)
            if r > l and b > t:
                image[t:b, l:r] = view[t:b, l:r]
    if not intact(faces.frame):
        return None
    hide_faces(image, faces, mode)
    return image
