"""Align: 5-point similarity warp of every face to the 112x112 ArcFace template, at full resolution."""

from __future__ import annotations

import numpy as np

from engines.align import align_faces
from engines.types import Detections


class Align:
    def __call__(self, frame: np.ndarray, dets: Detections) -> np.ndarray:
        """(N, 112, 112, 3) uint8 crops, one per detection, in detection order."""
        return align_faces(frame, dets.landmarks)
