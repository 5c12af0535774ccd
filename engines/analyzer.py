"""Detect + align + embed in one call: the smallest end-to-end use of the core (enrolment, `embed`, baselines)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.align import align_faces
from engines.types import Detections


@dataclass
class AnalyzedFaces:
    detections: Detections
    crops: np.ndarray  # (N, 112, 112, 3) uint8 BGR
    embeddings: np.ndarray  # (N, 512) float32, L2-normalised


class FaceAnalyzer:
    """Holds a detector adapter and an ArcFace adapter; faces come back sorted left to right."""

    def __init__(self, detector, embedder, min_face: int = 0) -> None:
        self.detector = detector
        self.embedder = embedder
        self.min_face = min_face

    def detect(self, image: np.ndarray) -> Detections:
        dets = self.detector.detect(image)
        if self.min_face and len(dets):
            dets = dets[(dets.boxes[:, 2] - dets.boxes[:, 0]) >= self.min_face]
        if len(dets) > 1:
            dets = dets[np.argsort(dets.boxes[:, 0], kind="stable")]
        return dets

    def analyze(self, image: np.ndarray, largest_only: bool = False) -> AnalyzedFaces:
        dets = self.detect(image)
        if largest_only:
            dets = dets.largest()
        crops = align_faces(image, dets.landmarks)
        return AnalyzedFaces(dets, crops, self.embedder.embed(crops))
