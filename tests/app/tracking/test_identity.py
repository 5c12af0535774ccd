"""Identity per track: when to query the gallery, and how the name shown is voted."""

import numpy as np

from app.tracking.identity import TrackIdentities


def unit(seed: int, base: np.ndarray | None = None, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=512) if base is None else base + noise * rng.normal(size=512)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_new_track_is_due_then_only_on_refresh():
    ids = TrackIdentities(drift_threshold=0.15, refresh_frames=10)
    a = unit(0)
    assert ids.update(np.array([5]), a[None]) == [5]
    due = [f for f in range(1, 25) if ids.update(np.array([5]), unit(f, a, 0.01)[None])]
    assert due == [10, 20]  # a steady face is re-checked at the slow refresh only


def test_drift_triggers_a_query():
    ids = TrackIdentities(drift_threshold=0.15, refresh_frames=1000, alpha=0.5)
    a, b = unit(1), unit(2)
    ids.update(np.array([1]), a[None])
    frames = [f for f in range(1, 10) if ids.update(np.array([1]), b[None])]
    assert frames and frames[0] <= 2  # the running embedding moved away from what was queried


def test_ema_stays_unit_and_moves_toward_new_embeddings():
    ids = TrackIdentities(alpha=0.9)
    a, b = unit(3), unit(4)
    ids.update(np.array([1]), a[None])
    for _ in range(5):
        ids.update(np.array([1]), b[None])
    e = ids.embedding(1)
    assert abs(np.linalg.norm(e) - 1) < 1e-5
    assert e @ b > 0.3 and e @ a < 0.95


def test_one_wrong_answer_does_not_flip_the_name_but_a_consistent_change_does():
    ids = TrackIdentities(max_votes=10)
    for _ in range(4):
        ids.record(1, "ada", "Ada", 0.6)
    ids.record(1, "bob", "Bob", 0.5)
    assert ids.label(1).name == "Ada"
    for _ in range(5):
        ids.record(1, "bob", "Bob", 0.6)
    assert ids.label(1).name == "Bob"


def test_unknown_answers_outvote_weak_matches():
    ids = TrackIdentities()
    assert ids.label(9) is None
    ids.record(9, None, None, 0.0)
    ids.record(9, None, None, 0.0)
    ids.record(9, "ada", "Ada", 0.36)
    label = ids.label(9)
    assert label.name is None and label.votes == 2


def test_forget_and_similarity():
    ids = TrackIdentities()
    a = unit(5)
    ids.update(np.array([3]), a[None])
    assert abs(ids.similarity(3, a) - 1) < 1e-5
    ids.forget([3])
    assert ids.similarity(3, a) is None
