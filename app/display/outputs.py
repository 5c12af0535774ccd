"""Where annotated frames go: an OpenCV window, a JSONL track log (the video file: video.py; the web app and its
MJPEG streams: app/web)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

from app.errors import FacestreamError
from app.types import UNKNOWN, Faces, FrameRef

log = logging.getLogger("facestream.display")


NO_WINDOW = "cannot open a window (no display?): run with --headless --out FILE.mp4 or --serve PORT"


QUIT_KEYS = (ord("q"), 27)  # q, Esc


class Window:
    """A real OpenCV window; ``show`` / ``pump`` return False once the user pressed q/Esc or closed it.

    Other keys pressed are queued in ``keys`` for the caller (overlay, pause, help: see present.KEYS).
    The window is created with the first picture, not before: with OpenCV's Qt backend a window created
    while the process then spends seconds loading models stayed black for the whole run about one time
    in six on a busy machine (the first paint is lost); created and shown at once it never did (24 / 24).
    """

    def __init__(self, title: str = "facestream") -> None:
        self.title = title
        if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise FacestreamError(f"{NO_WINDOW} (DISPLAY is not set)")
        self._shown = False
        self.keys: list[str] = []

    def show(self, frame: np.ndarray) -> bool:
        if not self._shown:
            try:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
            except cv2.error as exc:
                raise FacestreamError(f"{NO_WINDOW} ({str(exc).strip().splitlines()[-1]})") from exc
            cv2.resizeWindow(self.title, frame.shape[1], frame.shape[0])
            self._shown = True
        cv2.imshow(self.title, frame)
        return self.pump()

    def pump(self, wait_ms: int = 1) -> bool:
        """Let the window handle its events for up to ``wait_ms`` (also while no frame arrives); False once
        the user closed it."""
        if not self._shown:
            time.sleep(max(1, wait_ms) / 1000)  # not created yet: nothing to pump, nothing closed; still wait
            return True
        key = cv2.waitKey(max(1, wait_ms))
        if key >= 0:
            key &= 0xFF
            if key in QUIT_KEYS:
                return False
            self.keys.append(chr(key))
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return False

    def close(self) -> None:
        if not self._shown:
            return
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


class TrackLog:
    """One JSON line per processed frame: the machine-readable twin of the window (fields: docs/tracklog.md)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "w", buffering=1)  # noqa: SIM115 - closed in close(); line-buffered for live readers

    def write(self, ref: FrameRef, faces: Faces) -> None:
        rows = []
        for i in range(len(faces)):
            name = faces.names[i] if i < len(faces.names) else UNKNOWN
            pid = faces.person_ids[i] if i < len(faces.person_ids) else ""
            nearest = faces.nearest[i] if i < len(faces.nearest) else ""
            rows.append({
                "track_id": int(faces.track_ids[i]) if faces.track_ids is not None else -1,
                "box": [round(float(v), 1) for v in faces.boxes[i]],
                "score": round(float(faces.scores[i]), 3),
                "name": name,
                "person_id": pid or None,
                "similarity": round(float(faces.similarities[i]), 3) if faces.similarities is not None else None,
                "nearest": nearest or None,
            })
        self.f.write(json.dumps({"frame": ref.index, "stream": ref.stream, "seq": ref.seq,
                                 "capture_ts": round(ref.ts, 6), "display_ts": round(time.time(), 6),
                                 "faces": rows}) + "\n")

    def close(self) -> None:
        self.f.close()
