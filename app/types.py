"""What stages hand each other: small arrays about the faces of one frame (never the frame itself)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNKNOWN = "unknown"


@dataclass
class FrameRef:
    """Where a frame lives: its sequence number in the shared ring, when and from which stream it came."""

    seq: int
    ts: float  # capture time, time.time()
    stream: int = 0
    index: int = 0  # frame index within its stream (files: position in the file)


@dataclass
class Faces:
    """Faces of one frame as they move down the pipeline; later stages fill more fields.

    boxes (N,4) x1y1x2y2, scores (N,), landmarks (N,5,2) in frame pixels; track_ids (N,) int64 (−1: not
    tracked); embeddings (N,512) only for the rows in ``query`` (indices due for a gallery query);
    names/similarities per row once the gallery stage has labelled them (an unknown face: the similarity of
    the ``nearest`` person, below the match threshold). ``scene``: capture's scene counter for the frame
    (it steps up at a cut; −1: not known), which ends every track's identity claim when it changes.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    track_ids: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    query: np.ndarray | None = None
    names: list[str] = field(default_factory=list)
    person_ids: list[str] = field(default_factory=list)
    similarities: np.ndarray | None = None
    nearest: list[str] = field(default_factory=list)  # per row: best gallery match of an unknown face, or ""
    scene: int = -1

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))

    def arrays(self) -> dict[str, np.ndarray]:
        """The numeric fields, for the shared-memory record queue."""
        out = {"boxes": self.boxes, "scores": self.scores, "landmarks": self.landmarks}
        for name in ("track_ids", "embeddings", "query", "similarities"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.scene >= 0:
            out["scene"] = np.array([self.scene], np.int64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict | None = None) -> Faces:
        meta = meta or {}
        return cls(
            boxes=arrays["boxes"], scores=arrays["scores"], landmarks=arrays["landmarks"],
            track_ids=arrays.get("track_ids"), embeddings=arrays.get("embeddings"), query=arrays.get("query"),
            similarities=arrays.get("similarities"), names=list(meta.get("names", [])),
            person_ids=list(meta.get("person_ids", [])), nearest=list(meta.get("nearest", [])),
            scene=int(arrays["scene"][0]) if "scene" in arrays else -1,
        )

    def meta(self) -> dict:
        return {"names": self.names, "person_ids": self.person_ids, "nearest": self.nearest} if self.names else {}
