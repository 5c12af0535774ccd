"""Align: 5-point similarity warp of every face to the 112x112 ArcFace template, at full resolution."""

from __future__ import annotations

import numpy as np

from app.protocol import Context, Stage
from app.types import Faces
from engines.align import align_faces
from engines.types import Detections


class Align:
    def __call__(self, frame: np.ndarray, dets: Detections) -> np.ndarray:
        """(N, 112, 112, 3) uint8 crops, one per detection, in detection order."""
        return align_faces(frame, dets.landmarks)


class AlignStage(Stage):
    """The CPU warp, in its own process (on a GPU detect aligns and the list has no align stage)."""

    reads_frames = True

    def setup(self, ctx: Context) -> None:
        import cv2

        # one thread: a 112x112 warp is too small to share out, and OpenCV's pool (a thread per core) spun
        # 4.5 of the H100 machine's 16 cores for 1 ms of work per frame, cores the video decoder needed
        cv2.setNumThreads(1)

    def process(self, frame: np.ndarray | None, rec: Faces) -> Faces:
        rec.crops = align_faces(frame, rec.landmarks)
        return rec
