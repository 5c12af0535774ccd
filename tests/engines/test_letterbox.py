import numpy as np
import pytest

from engines.letterbox import LetterboxInfo, boxes_to_original, letterbox, letterbox_info, points_to_original


def boxes_to_letterbox(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """The forward mapping the tests invert (the product only maps letterbox → original): scale, then pad."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return b * np.float32([info.scale_x, info.scale_y] * 2) + np.float32([info.pad_x, info.pad_y] * 2)


def points_to_letterbox(points: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    p = np.asarray(points, dtype=np.float32)
    return p * np.float32([info.scale_x, info.scale_y]) + np.float32([info.pad_x, info.pad_y])

# (original h, w) -> (input H, W): downscale, upscale, portrait, landscape, odd sizes
CASES = [
    ((1080, 1920), (640, 640)),
    ((1920, 1080), (640, 640)),
    ((240, 427), (640, 640)),
    ((100, 75), (640, 480)),
    ((898, 1600), (480, 640)),
    ((333, 777), (320, 320)),
    ((640, 640), (640, 640)),
]


def _bright_extent(img: np.ndarray) -> tuple[int, int, int, int]:
    """Edge coordinates [x1, x2) x [y1, y2) of the pixels brighter than half-grey."""
    ys, xs = np.nonzero(img[..., 0] > 127)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("orig_hw,size_hw", CASES)
def test_drawn_rectangle_maps_back_to_its_pixels(orig_hw, size_hw, center):
    h, w = orig_hw
    rng = np.random.default_rng(h * 7 + w)
    for _ in range(5):
        x1, x2 = sorted(rng.choice(np.arange(w // 10, w - w // 10), 2, replace=False))
        y1, y2 = sorted(rng.choice(np.arange(h // 10, h - h // 10), 2, replace=False))
        img = np.zeros((h, w, 3), np.uint8)
        img[y1:y2, x1:x2] = 255
        out, info = letterbox(img, size_hw, center=center)
        assert out.shape == (*size_hw, 3)
        back = boxes_to_original(np.array([_bright_extent(out)], np.float32), info)[0]
        # one letterbox pixel covers 1/scale original pixels: the edge is known to half of that
        tol = max(1.0, 0.5 / info.scale + 0.5)
        np.testing.assert_allclose(back, [x1, y1, x2, y2], atol=tol)


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("orig_hw,size_hw", CASES)
def test_fit_fills_one_side_and_pads_the_rest(orig_hw, size_hw, center):
    img = np.full((*orig_hw, 3), 200, np.uint8)
    out, info = letterbox(img, size_hw, pad_value=(1, 2, 3), center=center)
    nw, nh = info.resized_size
    assert nw <= size_hw[1] and nh <= size_hw[0]
    assert nw == size_hw[1] or nh == size_hw[0]
    assert abs(info.scale_x - info.scale_y) < 1.5 / min(orig_hw)  # aspect kept up to rounding
    inside = np.zeros(size_hw, bool)
    inside[info.pad_y:info.pad_y + nh, info.pad_x:info.pad_x + nw] = True
    assert (out[inside] == 200).all()
    assert (out[~inside] == (1, 2, 3)).all()
    if not center:
        assert (info.pad_x, info.pad_y) == (0, 0)
    else:
        assert abs((size_hw[1] - nw) - 2 * info.pad_x) <= 1 and abs((size_hw[0] - nh) - 2 * info.pad_y) <= 1


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("orig_hw,size_hw", CASES)
def test_forward_and_back_mapping_are_inverse(orig_hw, size_hw, center):
    info = letterbox_info(orig_hw, size_hw, center=center)
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, min(orig_hw), (50, 4)).astype(np.float32)
    pts = rng.uniform(0, min(orig_hw), (50, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(boxes_to_original(boxes_to_letterbox(boxes, info), info), boxes, atol=1e-2)
    np.testing.assert_allclose(points_to_original(points_to_letterbox(pts, info), info), pts, atol=1e-2)
    # a box's corners are points: both mappings agree
    corners = boxes.reshape(-1, 2, 2)
    np.testing.assert_allclose(
        points_to_letterbox(corners, info).reshape(-1, 4), boxes_to_letterbox(boxes, info), rtol=1e-6
    )


def test_clip_keeps_boxes_inside_the_image():
    info = letterbox_info((100, 200), (320, 320))
    boxes = np.array([[-10, -10, 400, 400], [10, 10, 20, 20]], np.float32)
    out = boxes_to_original(boxes, info, clip=True)
    assert out[0].tolist() == [0, 0, 200, 100]
    np.testing.assert_allclose(out[1], boxes[1] / info.scale, rtol=1e-6)


def test_forced_scale_one_pads_without_resampling():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (100, 150, 3), dtype=np.uint8)
    out, info = letterbox(img, (128, 160), scale=1.0, pad_value=0)
    assert (info.scale_x, info.scale_y) == (1.0, 1.0)
    assert np.array_equal(out[:100, :150], img)
    assert not out[100:].any() and not out[:, 150:].any()


def test_preallocated_output_is_filled_in_place():
    img = np.full((50, 100, 3), 9, np.uint8)
    buf = np.empty((64, 64, 3), np.uint8)
    out, _ = letterbox(img, (64, 64), pad_value=5, out=buf)
    assert out is buf
    assert (buf[:32] == 9).all() and (buf[32:] == 5).all()
    with pytest.raises(ValueError):
        letterbox(img, (64, 64), out=np.empty((32, 32, 3), np.uint8))


def test_empty_image_is_refused():
    with pytest.raises(ValueError):
        letterbox_info((0, 10), (64, 64))
