"""Scene cuts: the counter steps exactly at the shared clip's cuts, and not for motion, a shift or a brightness
change."""

import numpy as np

from app.tracking.scene import CUT_DISTANCE, SceneCuts, distance, thumbnail


def picture(seed: int, h: int = 360, w: int = 640) -> np.ndarray:
    """A smooth random picture (blocks of colour), like a scene rather than noise."""
    small = np.random.default_rng(seed).integers(0, 256, (h // 40 + 1, w // 40 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 40, axis=0), 40, axis=1)[:h, :w]


def test_thumbnail_has_one_size_at_any_resolution():
    for h, w in ((360, 640), (1080, 1920), (100, 100)):
        assert thumbnail(np.zeros((h, w, 3), np.uint8)).shape == (12, 16)


def test_same_scene_shifted_or_brighter_is_near_and_another_scene_is_far():
    a = picture(1)
    shifted = np.roll(a, (3, 5), axis=(0, 1))
    brighter = np.clip(a.astype(np.int16) * 1.2 + 20, 0, 255).astype(np.uint8)
    assert distance(thumbnail(a), thumbnail(shifted)) < 0.2
    assert distance(thumbnail(a), thumbnail(brighter)) < 0.05
    assert distance(thumbnail(a), thumbnail(picture(2))) > CUT_DISTANCE
    black = np.zeros_like(a)
    assert distance(thumbnail(black), thumbnail(black)) == 0.0  # a black stretch is one scene
    assert distance(thumbnail(black), thumbnail(a)) == 1.0


def test_counter_steps_once_per_cut():
    cuts = SceneCuts()
    a, b = picture(1), picture(2)
    scenes = [cuts.update(f) for f in (a, a, np.roll(a, 2, axis=1), b, b, a)]
    assert scenes == [0, 0, 0, 1, 1, 2]


def test_the_shared_clip_cuts_at_its_labelled_frames_only(media_dir):
    """The README's cuts (82, 211) and the jump into the cross-fade at 20, nothing else; the weakest cut and the
    strongest motion both stay clear of the threshold."""
    import cv2

    cap = cv2.VideoCapture(str(media_dir / "video/short_hamilton_clip.mp4"))
    cuts, scene, at, dist = SceneCuts(), 0, [], []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        now = cuts.update(frame)
        if now != scene:
            at.append(len(dist))
        scene = now
        dist.append(cuts.distance)
    assert len(dist) == 275
    assert at == [20, 82, 211]
    others = np.delete(np.asarray(dist), at)
    assert min(dist[i] for i in at) > CUT_DISTANCE + 0.1 and others.max() < CUT_DISTANCE - 0.1
