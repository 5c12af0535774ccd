"""What the runtime tests need that the app does not: building records, copying a frame out of a ring."""

from __future__ import annotations

import numpy as np

from app.runtime.record import End
from app.runtime.ring import FrameRing
from app.types import Faces, FrameRef


def rec(seq: int = -1, ts: float = 0.0, stream: int = 0, index: int = 0, scene: int = -1, **fields) -> Faces:
    """A record of frame ``seq`` with any ``Faces`` fields set (e.g. ``track_ids=`` as a test payload)."""
    return Faces(frame=FrameRef(seq, ts, stream, index, scene), **fields)


def end(seq: int = -1, ts: float = 0.0, stream: int = 0) -> End:
    return End(FrameRef(seq, ts, stream))


def is_end(r) -> bool:
    return isinstance(r, End)


def copy_frame(ring: FrameRing, seq: int, out: np.ndarray | None = None) -> np.ndarray | None:
    """A private copy of frame ``seq`` (into ``out`` if given and of the right shape), or None if overwritten."""
    view = ring.view(seq)
    if view is None:
        return None
    if out is None or out.shape != view.shape:
        out = np.empty_like(view)
    np.copyto(out, view)
    return out if ring.still_valid(seq) else None
