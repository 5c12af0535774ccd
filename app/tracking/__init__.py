"""Following faces across frames (ByteTrack) and keeping one identity per track (EMA embedding + votes)."""

from app.tracking.bytetrack import ByteTracker, TrackResult
from app.tracking.identity import Label, TrackIdentities

__all__ = ["ByteTracker", "Label", "TrackIdentities", "TrackResult"]
