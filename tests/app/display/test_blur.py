"""Privacy blur on real faces: what PRIVACY_BLUR hides loses its detail; what it does not hide keeps every pixel."""

from __future__ import annotations

import cv2
import numpy as np

from app.display.annotate import Renderer
from app.display.blur import chosen, hide_faces, pixelate
from app.types import UNKNOWN, Faces


def detail(img: np.ndarray, box) -> float:
    """Laplacian variance of the middle of a box (clear of the drawn box lines and labels)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    dx, dy = (x2 - x1) // 4, (y2 - y1) // 4
    grey = cv2.cvtColor(img[y1 + dy:y2 - dy, x1 + dx:x2 - dx], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def faces_of(boxes, names) -> Faces:
    n = len(boxes)
    return Faces(np.asarray(boxes, np.float32), np.full(n, 0.9, np.float32), np.zeros((n, 5, 2), np.float32),
                 track_ids=np.arange(n), names=list(names), similarities=np.full(n, 0.7, np.float32))


def test_unknown_mode_hides_only_faces_without_a_name():
    f = faces_of([[0, 0, 10, 10]] * 3, ["Ada", UNKNOWN, UNKNOWN])
    assert chosen(f, "unknown") == [1, 2] and chosen(f, "all") == [0, 1, 2] and chosen(f, "none") == []
    f.names = []  # not labelled yet: hidden, never shown by mistake
    assert chosen(f, "unknown") == [0, 1, 2]


def test_real_faces_lose_their_detail_and_named_ones_keep_theirs(media_dir, checkpoint_dir):
    from app.cli.tools import _analyzer
    from app.settings import Settings

    image = cv2.imread(str(media_dir / "scenes" / "two_people.jpg"))
    found = _analyzer(Settings.load(None, environ={"CHECKPOINT_DIR": str(checkpoint_dir)})).analyze(image)
    boxes = found.detections.boxes
    assert len(boxes) == 2
    faces = faces_of(boxes, ["Barack Obama", UNKNOWN])
    faces.landmarks = found.detections.landmarks  # drawn as dots: none may land on a hidden face
    plain = Renderer(blur="none").draw(image.copy(), faces)
    hidden = Renderer(blur="unknown").draw(image.copy(), faces)
    assert detail(hidden, boxes[1]) < 0.05 * detail(plain, boxes[1])  # the stranger: no detail left
    x1, y1, x2, y2 = (int(v) for v in boxes[0])
    assert np.array_equal(hidden[y1:y2, x1:x2], plain[y1:y2, x1:x2])  # the named face: untouched
    every = Renderer(blur="all").draw(image.copy(), faces)
    assert all(detail(every, b) < 0.05 * detail(plain, b) for b in boxes)


def test_boxes_at_or_past_the_edge_are_clipped():
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8)
    before = img.copy()
    pixelate(img, [-20, -20, 10, 10])
    pixelate(img, [55, 35, 90, 90])
    pixelate(img, [100, 100, 120, 120])  # wholly outside: nothing
    assert img.shape == (40, 60, 3) and not np.array_equal(img[:5, :5], before[:5, :5])
    assert np.array_equal(img[15:30, 15:45], before[15:30, 15:45])
    assert hide_faces(img, faces_of([[0, 0, 30, 30]], ["Ada"]), "unknown") == []


def test_snapshot_copy_holds_the_faces_only_hidden_ones_blurred_and_never_a_torn_frame():
    from app.display.blur import hidden_copy
    from app.types import FrameRef

    rng = np.random.default_rng(3)
    view = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    f = faces_of([[100, 100, 160, 170], [400, 50, 470, 130]], ["Ada", UNKNOWN])
    f.frame = FrameRef(7, 0.0)
    image = hidden_copy(view, f, "unknown", lambda ref: True)
    assert np.array_equal(image[110:160, 110:150], view[110:160, 110:150])  # the named face, untouched
    assert detail(image, [400, 50, 470, 130]) < detail(view, [400, 50, 470, 130]) / 20  # the unknown one, hidden
    assert not image[300:, :].any() and not image[:, 200:370].any()  # away from the faces: nothing copied
    whole = hidden_copy(view, f, "none", lambda ref: True, full=True)
    assert np.array_equal(whole, view)
    assert hidden_copy(view, f, "none", lambda ref: False) is None  # rewritten while copied
    assert hidden_copy(view, faces_of(np.zeros((0, 4)), []), "none", lambda ref: True) is None
