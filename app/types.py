"""The one record stages hand each other: the faces of one frame (never the frame itself) and its header."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNKNOWN = "unknown"


@dataclass
class FrameRef:
    """The frame header, declared once: where a frame lives (its sequence number in its stream's shared ring),
    when and from which stream it came, and capture's scene counter (it steps up at a cut; −1: not known),
    which ends every track's identity claim when it changes."""

    seq: int = -1
    ts: float = 0.0  # capture time, time.time()
    stream: int = 0
    index: int = 0  # frame index within its stream (files: position in the file)
    scene: int = -1


@dataclass
class Faces:
    """Faces of one frame as they move down the pipeline; each stage fills more fields.

    boxes (N,4) x1y1x2y2, scores (N,), landmarks (N,5,2) in frame pixels; crops (N,112,112,3) once aligned;
    track_ids (N,) int64 (−1: not tracked); embeddings (N,512) only for the rows in ``query`` (indices due for
    a gallery query); ``removed``: the track ids that ended with this frame (their votes end with them);
    names/similarities per row once the gallery stage has labelled them (an unknown face: the similarity of
    the ``nearest`` person, below the match threshold). ``frame``: the frame these faces were found in.
    Turned into bytes and back in one place only: ``app.runtime.record``.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 5, 2), np.float32))
    track_ids: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    query: np.ndarray | None = None
    names: list[str] = field(default_factory=list)
    person_ids: list[str] = field(default_factory=list)
    similarities: np.ndarray | None = None
    nearest: list[str] = field(default_factory=list)  # per row: best gallery match of an unknown face, or ""
    crops: np.ndarray | None = None
    removed: list[int] = field(default_factory=list)
    frame: FrameRef = field(default_factory=FrameRef)

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, frame: FrameRef | None = None) -> Faces:
        return cls(frame=frame or FrameRef())

    @property
    def scene(self) -> int:
        return self.frame.scene


#: the array fields of ``Faces`` (the rest: lists of text, the header), for its byte form
ARRAY_FIELDS = ("boxes", "scores", "landmarks", "track_ids", "embeddings", "query", "similarities", "crops")
TEXT_FIELDS = ("names", "person_ids", "nearest")
