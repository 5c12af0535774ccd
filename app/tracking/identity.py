"""One identity per track: a running (EMA) embedding that decides when to ask the gallery, and a vote over
the track's recent answers that decides the name shown.

Asking only when a track is new, when its embedding has drifted, or at a slow refresh keeps gallery
queries to a few per track instead of one per face per frame; voting keeps one bad frame (blur,
profile) from flipping a name, while a consistent change still wins after a few answers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

UNKNOWN_WEIGHT = 0.3  # weight of an "unknown" answer in the vote, about a typical match threshold


@dataclass
class Label:
    name: str | None  # None: unknown
    person_id: str | None
    score: float  # similarity shown: the winner's latest score
    votes: int  # answers behind the winner


@dataclass
class _State:
    ema: np.ndarray
    queried: np.ndarray | None = None  # the EMA embedding sent with the last query
    since_query: int = 0
    answers: deque = field(default_factory=lambda: deque(maxlen=10))  # (person_id, name, score)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


class TrackIdentities:
    def __init__(self, drift_threshold: float = 0.15, refresh_frames: int = 30, alpha: float = 0.9,
                 max_votes: int = 10) -> None:
        self.drift_threshold = drift_threshold
        self.refresh_frames = refresh_frames
        self.alpha = alpha
        self.max_votes = max_votes
        self.tracks: dict[int, _State] = {}

    # -- the embed+track side --------------------------------------------------------------------------
    def update(self, track_ids: np.ndarray, embeddings: np.ndarray) -> list[int]:
        """Fold this frame's embeddings into each track's EMA; return the tracks due for a gallery query."""
        due = []
        for tid, emb in zip(np.asarray(track_ids).tolist(), np.asarray(embeddings, np.float32)):
            st = self.tracks.get(tid)
            if st is None:
                st = self.tracks[tid] = _State(_unit(emb.astype(np.float32)),
                                               answers=deque(maxlen=self.max_votes))
            else:
                st.ema = _unit(self.alpha * st.ema + (1 - self.alpha) * emb)
                st.since_query += 1
            if (st.queried is None or 1.0 - float(st.ema @ st.queried) > self.drift_threshold
                    or st.since_query >= self.refresh_frames):
                st.queried = st.ema.copy()
                st.since_query = 0
                due.append(tid)
        return due

    def similarity(self, track_id: int, embedding: np.ndarray) -> float | None:
        """Cosine of ``embedding`` to the track's running embedding (None for a track not seen yet)."""
        st = self.tracks.get(track_id)
        return None if st is None or st.ema.size == 0 else float(st.ema @ embedding)

    def embedding(self, track_id: int) -> np.ndarray:
        return self.tracks[track_id].ema

    # -- the gallery side ------------------------------------------------------------------------------
    def record(self, track_id: int, person_id: str | None, name: str | None, score: float) -> None:
        """Remember one gallery answer for a track (person_id None: nobody above the threshold)."""
        st = self.tracks.get(track_id)
        if st is None:
            st = self.tracks[track_id] = _State(np.zeros(0, np.float32), answers=deque(maxlen=self.max_votes))
        st.answers.append((person_id, name, float(score)))

    def label(self, track_id: int) -> Label | None:
        """The vote over the track's recent answers (None before any answer)."""
        st = self.tracks.get(track_id)
        if st is None or not st.answers:
            return None
        weight: dict[str | None, float] = {}
        count: dict[str | None, int] = {}
        latest: dict[str | None, tuple[str | None, float]] = {}
        for pid, name, score in st.answers:
            weight[pid] = weight.get(pid, 0.0) + (UNKNOWN_WEIGHT if pid is None else max(score, 0.0))
            count[pid] = count.get(pid, 0) + 1
            latest[pid] = (name, score)
        winner = max(weight, key=lambda k: (weight[k], count[k]))
        name, score = latest[winner]
        return Label(name if winner is not None else None, winner, score if winner is not None else 0.0,
                     count[winner])

    def forget(self, track_ids) -> None:
        for tid in track_ids:
            self.tracks.pop(int(tid), None)
