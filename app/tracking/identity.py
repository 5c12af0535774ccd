"""One identity per track: a running (EMA) embedding that decides when to ask the gallery, and a vote over
the track's recent answers that decides the name shown.

Asking only when a track is new, when its embedding has drifted from the one last asked about, or at a
slow refresh keeps gallery queries to a few per track instead of one per face per frame; the refresh
still re-checks a steady face now and then, so a name is never fixed for good. Voting keeps one bad
frame (blur, profile) from flipping a name, while a consistent change still wins after a few answers.

Two objects, one job each: ``QuerySchedule`` (the embed+track stage: which tracks to query) and ``NameVote``
(the identify stage: the name shown). ``TrackIdentities`` joins them for callers that want both.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass
class Label:
    """The name shown for a track: the vote's winner (``name`` None: unknown)."""

    name: str | None
    person_id: str | None
    score: float  # the winner's latest similarity; unknown: the latest unknown answer's best (0.0: none yet)
    votes: int  # answers behind the winner (0: no answer yet)
    nearest: str | None = None  # unknown: the person that latest unknown answer came nearest to


@dataclass
class _Schedule:
    ema: np.ndarray | None = None  # running embedding, unit length (None until update() sees the track)
    queried: np.ndarray | None = None  # the running embedding as it was when last sent to the gallery
    since_query: int = 0  # updates since then


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


class QuerySchedule:
    """Per-track running embedding and the decision when to ask the gallery (the embed+track side).

    ``alpha``: weight of the history in the running embedding (0.9: each frame adds 10 %).
    ``drift_threshold``: cosine distance between the running embedding and the one last queried that
    calls for a new query. ``refresh_frames``: a track seen this many times since its last query is
    queried again anyway.
    """

    def __init__(self, drift_threshold: float = 0.15, refresh_frames: int = 30, alpha: float = 0.9) -> None:
        self.drift_threshold = drift_threshold
        self.refresh_frames = max(1, refresh_frames)
        self.alpha = alpha
        self.tracks: dict[int, _Schedule] = {}

    def update(self, track_ids: Iterable[int] | np.ndarray, embeddings: np.ndarray) -> list[int]:
        """Fold this frame's embeddings (one row per track id) into each track's running embedding.

        Returns the track ids due for a gallery query now: new, drifted, or due their refresh. A track
        returned is taken as queried (its current running embedding is what ``embedding`` gives).
        """
        due = []
        track_ids = np.asarray(track_ids).tolist()
        embeddings = np.asarray(embeddings, np.float32)
        if len(track_ids) != len(embeddings):
            raise ValueError(f"{len(track_ids)} track ids but {len(embeddings)} embeddings")
        for tid, emb in zip(track_ids, embeddings):
            st = self.tracks.setdefault(tid, _Schedule())
            if st.ema is None:
                st.ema = _unit(emb)
            else:
                st.ema = _unit(self.alpha * st.ema + (1 - self.alpha) * _unit(emb))
                st.since_query += 1
            if self._due(st):
                st.queried = st.ema.copy()
                st.since_query = 0
                due.append(tid)
        return due

    def _due(self, st: _Schedule) -> bool:
        return (st.queried is None or st.since_query >= self.refresh_frames
                or 1.0 - float(st.ema @ st.queried) > self.drift_threshold)

    def due_for_query(self, track_ids: Iterable[int]) -> list[int]:
        """Which of these tracks would be due, without changing anything (unknown ones are due)."""
        out = []
        for tid in track_ids:
            st = self.tracks.get(int(tid))
            if st is None or st.ema is None or self._due(st):
                out.append(int(tid))
        return out

    def similarity(self, track_id: int, embedding: np.ndarray) -> float | None:
        """Cosine of a unit ``embedding`` to the track's running embedding (None for a track not seen yet)."""
        st = self.tracks.get(track_id)
        return None if st is None or st.ema is None else float(st.ema @ embedding)

    def embedding(self, track_id: int) -> np.ndarray:
        """The track's running embedding, unit length (KeyError for a track ``update`` never saw)."""
        st = self.tracks[track_id]
        if st.ema is None:
            raise KeyError(track_id)
        return st.ema

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop removed tracks; an id not held is ignored."""
        for tid in track_ids:
            self.tracks.pop(int(tid), None)

    def __len__(self) -> int:
        return len(self.tracks)


class NameVote:
    """Per-track vote over the gallery's recent answers: the name shown (the identify side).

    ``max_votes``: answers kept per track. ``min_score``: an answer scoring below it counts as unknown.
    ``unknown_weight``: the weight of an unknown answer in the vote, where a known answer weighs its
    similarity; about a typical match threshold, so a weak match does not outvote as many unknowns.
    The library's changes (enrol, rename, merge, remove, a correction) edit the answers in place, so the next
    frame shows them without waiting for new answers.
    """

    def __init__(self, max_votes: int = 10, min_score: float = 0.0, unknown_weight: float = 0.3) -> None:
        self.max_votes = max_votes
        self.min_score = min_score
        self.unknown_weight = unknown_weight
        self.answers: dict[int, deque] = {}  # track id -> recent (person_id, name, score)

    def record(self, track_id: int, person_id: str | None, name: str | None, score: float) -> None:
        """Remember one gallery answer for a track. ``person_id`` None: nobody above the match threshold; then
        ``name`` and ``score`` may give the nearest person below it (what a threshold tuner needs)."""
        answers = self.answers.get(int(track_id))
        if answers is None:
            answers = self.answers[int(track_id)] = deque(maxlen=self.max_votes)
        answers.append((person_id, name, float(score)))

    def label(self, track_id: int) -> Label:
        """The vote over the track's recent answers, each known answer weighted by its similarity."""
        answers = self.answers.get(track_id)
        if not answers:
            return Label(None, None, 0.0, 0)
        weight: dict[str | None, float] = {}
        count: dict[str | None, int] = {}
        latest: dict[str | None, tuple[str | None, float]] = {}
        for pid, name, score in answers:
            if pid is not None and score < self.min_score:
                pid = None
            weight[pid] = weight.get(pid, 0.0) + (self.unknown_weight if pid is None else score)
            count[pid] = count.get(pid, 0) + 1
            latest[pid] = (name, score)
        winner = max(weight, key=lambda k: (weight[k], count[k]))
        if winner is None:
            nearest, score = latest[None]
            return Label(None, None, score, count[None], nearest)
        name, score = latest[winner]
        return Label(name, winner, score, count[winner])

    def _edit(self, fn) -> None:
        for tid, answers in self.answers.items():
            kept = [a for a in (fn(a) for a in answers) if a is not None]
            self.answers[tid] = deque(kept, maxlen=self.max_votes)

    def clear_unknown(self) -> None:
        """Drop every unknown answer (someone was just enrolled: those answers predate them)."""
        self._edit(lambda a: a if a[0] is not None else None)

    def rename(self, person_id: str, name: str) -> None:
        self._edit(lambda a: (person_id, name, a[2]) if a[0] == person_id else a)

    def move(self, person_id: str, into_id: str, name: str) -> None:
        """A merge: answers for ``person_id`` now name ``into_id``."""
        self._edit(lambda a: (into_id, name, a[2]) if a[0] == person_id else a)

    def drop_person(self, person_id: str) -> None:
        """A removal or a correction: answers naming this person no longer count."""
        self._edit(lambda a: a if a[0] != person_id else None)

    def clear(self, track_id: int) -> None:
        """Forget a track's answers but keep the track (it is un-named until new answers come)."""
        if int(track_id) in self.answers:
            self.answers[int(track_id)] = deque(maxlen=self.max_votes)

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop removed tracks; an id not held is ignored."""
        for tid in track_ids:
            self.answers.pop(int(tid), None)

    def __len__(self) -> int:
        return len(self.answers)


class TrackIdentities(QuerySchedule, NameVote):
    """Both halves for one caller (tests, tools); the stages keep the half they need."""

    def __init__(self, drift_threshold: float = 0.15, refresh_frames: int = 30, alpha: float = 0.9,
                 max_votes: int = 10, min_score: float = 0.0, unknown_weight: float = 0.3) -> None:
        QuerySchedule.__init__(self, drift_threshold, refresh_frames, alpha)
        NameVote.__init__(self, max_votes, min_score, unknown_weight)

    def forget(self, track_ids: Iterable[int]) -> None:
        track_ids = list(track_ids)
        QuerySchedule.forget(self, track_ids)
        NameVote.forget(self, track_ids)

    def __len__(self) -> int:
        return len(set(self.tracks) | set(self.answers))
