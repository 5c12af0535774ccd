"""Plain calls on the stages' compute objects, for tests: the pipeline itself only ever goes through
``Detect.detect_checked`` and ``EmbedTrack.submit``/``collect``."""

from __future__ import annotations

import numpy as np

from app.stages.detect import Detect
from app.stages.embed_track import EmbedTrack
from app.types import Faces
from engines.types import Detections


def detect_all(detect: Detect, frames: list[np.ndarray]) -> list[Detections]:
    """Detections of frames nothing can overwrite."""
    return detect.detect_checked(frames, lambda: [True] * len(frames))  # type: ignore[return-value]


def embed_batch(stage: EmbedTrack, items: list[tuple[Faces, np.ndarray, int, int | None]]) -> list[Faces]:
    """Several frames (of any streams) at once, finished before returning: track each, embed the faces due."""
    return stage.collect(stage.submit(items))


def embed_one(stage: EmbedTrack, faces: Faces, crops: np.ndarray, stream: int = 0,
              frame_index: int | None = None) -> Faces:
    return embed_batch(stage, [(faces, crops, stream, frame_index)])[0]
