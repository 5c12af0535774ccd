"""Identity per track: when to query the gallery, and how the name shown is voted."""

import numpy as np
import pytest

from app.tracking.identity import Label, TrackIdentities


def unit(seed: int, base: np.ndarray | None = None, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=512) if base is None else base + noise * rng.normal(size=512)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_new_track_is_due_at_once_then_only_on_refresh():
    ids = TrackIdentities(drift_threshold=0.15, refresh_frames=10)
    a = unit(0)
    assert ids.update(np.array([5]), a[None]) == [5]
    due = [f for f in range(1, 25) if ids.update(np.array([5]), unit(f, a, 0.01)[None])]
    assert due == [10, 20]  # a steady face is re-checked at the slow refresh only


def test_only_the_tracks_due_are_returned():
    ids = TrackIdentities(refresh_frames=100)
    a, b, c = unit(1), unit(2), unit(3)
    assert ids.update([1, 2], np.stack([a, b])) == [1, 2]
    assert ids.update([1, 2, 3], np.stack([a, b, c])) == [3]  # only the newcomer
    assert ids.update([], np.zeros((0, 512), np.float32)) == []
    with pytest.raises(ValueError):
        ids.update([1, 2], a[None])


def test_drift_triggers_a_query_exactly_when_the_running_embedding_leaves_the_queried_one():
    ids = TrackIdentities(drift_threshold=0.15, refresh_frames=1000, alpha=0.9)
    a, b = unit(1), unit(2)  # two different people: cosine about 0
    ids.update(np.array([1]), a[None])
    queried, frames = a, []
    for f in range(1, 40):
        due = ids.update(np.array([1]), b[None]) == [1]
        e = ids.embedding(1)
        assert due == (1 - float(e @ queried) > 0.15), f"frame {f}"
        if due:
            queried, frames = e, frames + [f]
    assert frames and frames[0] <= 8  # the new face is asked about within a fraction of a second
    assert ids.embedding(1) @ b > 0.95 and len(frames) < 10  # re-asked while it moved, quiet once it settled


def test_ema_stays_unit_length_and_follows_at_the_alpha_rate():
    ids = TrackIdentities(alpha=0.9)
    a, b = unit(3), unit(4)
    ids.update(np.array([1]), a[None])
    ids.update(np.array([1]), b[None])
    e = ids.embedding(1)
    expected = 0.9 * a + 0.1 * b
    np.testing.assert_allclose(e, expected / np.linalg.norm(expected), rtol=1e-5, atol=1e-6)
    for _ in range(5):
        ids.update(np.array([1]), b[None])
    assert abs(np.linalg.norm(ids.embedding(1)) - 1) < 1e-5
    assert ids.similarity(1, b) > 0.3 and ids.similarity(1, a) < 0.95


def test_due_for_query_predicts_without_changing_state():
    ids = TrackIdentities(refresh_frames=3)
    a = unit(5)
    assert ids.due_for_query([7]) == [7]  # never seen: due
    ids.update([7], a[None])
    assert ids.due_for_query([7]) == []
    ids.update([7], a[None])
    ids.update([7], a[None])
    ids.update([7], a[None])  # third update since the query: refreshed, and the counter restarts
    assert ids.due_for_query([7]) == []
    assert ids.due_for_query([7]) == []  # asking twice does not advance anything


def test_one_wrong_answer_does_not_flip_the_name_but_a_consistent_change_does():
    ids = TrackIdentities(max_votes=10)
    for _ in range(4):
        ids.record(1, "ada", "Ada", 0.6)
    ids.record(1, "bob", "Bob", 0.65)  # a single, even slightly stronger, wrong answer
    assert ids.label(1).name == "Ada"
    flipped_after = None
    for k in range(1, 8):
        ids.record(1, "bob", "Bob", 0.6)
        if ids.label(1).name == "Bob":
            flipped_after = k
            break
    assert flipped_after == 3  # Bob's weight (0.65 + 3 x 0.6) passes Ada's 4 x 0.6 on the third answer
    label = ids.label(1)
    assert label == Label("Bob", "bob", 0.6, 4)


def test_old_answers_leave_the_vote_window():
    ids = TrackIdentities(max_votes=5)
    for _ in range(5):
        ids.record(1, "ada", "Ada", 0.9)
    for _ in range(5):
        ids.record(1, "bob", "Bob", 0.4)
    assert ids.label(1) == Label("Bob", "bob", 0.4, 5)  # Ada's stronger answers have all aged out


def test_unknown_without_answers_and_when_weak_matches_are_outvoted():
    ids = TrackIdentities()
    assert ids.label(9) == Label(None, None, 0.0, 0)
    ids.record(9, None, None, 0.0)
    ids.record(9, None, None, 0.0)
    ids.record(9, "ada", "Ada", 0.36)
    assert ids.label(9) == Label(None, None, 0.0, 2)
    ids.record(9, "ada", "Ada", 0.5)
    assert ids.label(9).name == "Ada"  # 0.86 against 0.6


def test_answers_below_min_score_count_as_unknown():
    ids = TrackIdentities(min_score=0.4)
    for _ in range(3):
        ids.record(2, "ada", "Ada", 0.35)
    assert ids.label(2).name is None
    ids.record(3, "ada", "Ada", 0.45)
    assert ids.label(3) == Label("Ada", "ada", 0.45, 1)


def test_forget_and_record_for_a_track_not_seen_by_update():
    ids = TrackIdentities()
    a = unit(6)
    ids.update(np.array([3]), a[None])
    assert abs(ids.similarity(3, a) - 1) < 1e-5
    ids.forget([3, 99])
    assert ids.similarity(3, a) is None and len(ids) == 0
    ids.record(4, "ada", "Ada", 0.7)  # a late gallery answer for a track embed+track has not shown yet
    assert ids.similarity(4, a) is None
    with pytest.raises(KeyError):
        ids.embedding(4)
    assert ids.update([4], a[None]) == [4]  # then seen: new, so due; the answer is kept
    assert ids.label(4).name == "Ada"


def test_an_unknown_label_carries_the_latest_unknown_answers_nearest_person():
    ids = TrackIdentities(min_score=0.4)
    ids.record(5, None, "Ada", 0.21)  # below the match threshold: unknown, Ada nearest
    assert ids.label(5) == Label(None, None, 0.21, 1, "Ada")
    ids.record(5, "bob", "Bob", 0.38)  # a match below min_score counts as unknown, Bob now the nearest
    assert ids.label(5) == Label(None, None, 0.38, 2, "Bob")
    ids.record(6, None, None, 0.0)  # an empty gallery: nobody near
    assert ids.label(6) == Label(None, None, 0.0, 1, None)
