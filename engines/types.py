"""The one detection type every stage passes around (boxes, scores, 5 landmarks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    """Faces found in one image, in that image's pixel coordinates.

    boxes: (N, 4) float32 x1, y1, x2, y2; scores: (N,) float32;
    landmarks: (N, 5, 2) float32 — left eye, right eye, nose, left mouth, right mouth
    (left/right as seen in the image).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(-1, 5, 2)
        n = len(self.boxes)
        if len(self.scores) != n or len(self.landmarks) != n:
            raise ValueError(
                f"Detections: {n} boxes, {len(self.scores)} scores, {len(self.landmarks)} landmarks"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2)))

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: int | slice | np.ndarray) -> Detections:
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1)
        return Detections(self.boxes[index], self.scores[index], self.landmarks[index])

    @property
    def areas(self) -> np.ndarray:
        wh = np.clip(self.boxes[:, 2:] - self.boxes[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    def largest(self) -> Detections:
        """The single largest face (empty stays empty)."""
        if len(self) == 0:
            return self
        return self[int(np.argmax(self.areas))]
