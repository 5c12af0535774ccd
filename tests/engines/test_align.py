"""Five-point alignment: the recovered transform, where pixels land, and parity with insightface's norm_crop."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from engines.align import ARCFACE_TEMPLATE, align_faces, estimate_norm, estimate_norms, norm_crop, template


def _similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


def _apply(t: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ t[:2, :2].T + t[:2, 2]


#: (angle rad, scale, tx, ty): face placements template → image, small and large, tilted both ways;
#: all inside a 1280×720 frame and apart from each other
PLACEMENTS = [(0.0, 1.0, 100.0, 50.0), (0.35, 2.5, 400.0, 80.0), (-0.6, 0.8, 100.0, 450.0), (1.2, 3.0, 1100.0, 250.0)]


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_transform_is_inverse_of_applied_similarity(placement):
    t = _similarity(*placement)
    m = estimate_norm(_apply(t, ARCFACE_TEMPLATE.astype(np.float64)))
    np.testing.assert_allclose(m, np.linalg.inv(t)[:2], atol=1e-9)


def test_batched_transforms_equal_single_ones():
    rng = np.random.default_rng(1)
    lms = np.stack([_apply(_similarity(*p), ARCFACE_TEMPLATE) + rng.normal(0, 1.5, (5, 2)) for p in PLACEMENTS])
    batched = estimate_norms(lms)
    for lm, m in zip(lms, batched):
        np.testing.assert_allclose(m, estimate_norm(lm), atol=1e-12)


def test_least_squares_equals_umeyama_and_insightface():
    """Noisy landmarks: the closed form equals skimage's Umeyama in float64 to rounding, and insightface's
    estimate_norm (which runs skimage on float32 input) to its float32 precision."""
    transform = pytest.importorskip("skimage.transform")
    face_align = pytest.importorskip("insightface.utils.face_align")
    rng = np.random.default_rng(2)
    for _ in range(50):
        placement = (rng.uniform(-1, 1), rng.uniform(0.3, 5), *rng.uniform(0, 1500, 2))
        lm = (_apply(_similarity(*placement), ARCFACE_TEMPLATE) + rng.normal(0, 3, (5, 2))).astype(np.float32)
        tf = transform.SimilarityTransform()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # skimage 0.26 deprecates estimate()
            assert tf.estimate(lm.astype(np.float64), ARCFACE_TEMPLATE.astype(np.float64))
            reference = face_align.estimate_norm(lm)
        np.testing.assert_allclose(estimate_norm(lm), tf.params[:2], atol=1e-9)
        np.testing.assert_allclose(estimate_norm(lm), reference, atol=2e-3)


def test_never_reflects():
    """Mirror-image landmarks get a rotation (positive determinant), not a reflection."""
    mirrored = ARCFACE_TEMPLATE.astype(np.float64) * [-1.0, 1.0] + [200.0, 0.0]
    m = estimate_norm(mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_degenerate_landmarks_give_black_crop_not_nan():
    image = np.full((200, 200, 3), 255, np.uint8)
    m = estimate_norm(np.full((5, 2), 50.0))
    assert np.all(np.isfinite(m))
    assert norm_crop(image, np.full((5, 2), 50.0)).max() == 0


@pytest.mark.parametrize("size", [112, 224, 128])
def test_template_scales_with_size(size):
    """The template itself aligns to the identity at 112; a crop of another size scales it (insightface's rule)."""
    m = estimate_norm(ARCFACE_TEMPLATE, size)
    np.testing.assert_allclose(_apply(np.vstack([m, [0, 0, 1]]), ARCFACE_TEMPLATE), template(size), atol=1e-4)
    if size == 112:
        np.testing.assert_allclose(m, np.eye(3)[:2], atol=1e-6)


def _draw_dots(shape, points, sigma):
    """Gaussian dots (sub-pixel centres) on a black uint8 image."""
    image = np.zeros(shape[:2], np.float64)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for x, y in points:
        r = int(4 * sigma) + 2
        x0, x1, y0, y1 = int(x) - r, int(x) + r + 1, int(y) - r, int(y) + r + 1
        image[y0:y1, x0:x1] += np.exp(-((xx[y0:y1, x0:x1] - x) ** 2 + (yy[y0:y1, x0:x1] - y) ** 2) / (2 * sigma**2))
    return np.repeat(np.clip(image * 255, 0, 255).round().astype(np.uint8)[..., None], 3, axis=2)


def _centroid(crop, at, radius=6):
    x0, y0 = int(round(at[0])) - radius, int(round(at[1])) - radius
    win = crop[y0:y0 + 2 * radius + 1, x0:x0 + 2 * radius + 1, 0].astype(np.float64)
    yy, xx = np.mgrid[y0:y0 + 2 * radius + 1, x0:x0 + 2 * radius + 1]
    return np.array([(win * xx).sum(), (win * yy).sum()]) / win.sum()


def test_dots_at_landmarks_land_on_the_template():
    """Several faces in one frame, drawn as dots at their landmarks: after align_faces every dot sits on its
    template point (sub-pixel), whatever the face's rotation, size and position."""
    shape = (720, 1280, 3)
    crop_sigma = 1.5
    landmarks, image = [], np.zeros(shape, np.uint8)
    for placement in PLACEMENTS:
        points = _apply(_similarity(*placement), ARCFACE_TEMPLATE.astype(np.float64))
        landmarks.append(points)
        image = np.maximum(image, _draw_dots(shape, points, crop_sigma * placement[1]))
    crops = align_faces(image, np.array(landmarks, np.float32))
    assert crops.shape == (len(PLACEMENTS), 112, 112, 3) and crops.dtype == np.uint8
    for crop in crops:
        found = np.array([_centroid(crop, p) for p in ARCFACE_TEMPLATE])
        np.testing.assert_allclose(found, ARCFACE_TEMPLATE, atol=0.05)  # measured ≤ 0.01 px


def test_align_faces_equals_norm_crop_and_insightface():
    face_align = pytest.importorskip("insightface.utils.face_align")
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    lms = np.stack([_apply(_similarity(*p), ARCFACE_TEMPLATE) for p in PLACEMENTS[:3]]).astype(np.float32)
    lms[2] += [-350.0, -150.0]  # a face partly outside the frame: the border is black
    crops = align_faces(image, lms)
    for crop, lm in zip(crops, lms):
        np.testing.assert_array_equal(crop, norm_crop(image, lm))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            ref = face_align.norm_crop(image, lm)
        diff = np.abs(crop.astype(int) - ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # float32 vs float64 transform: rounding only
    assert (crops[2] == 0).all(axis=2).any()


def test_empty_and_grey_inputs():
    image = np.zeros((100, 100, 3), np.uint8)
    out = align_faces(image, np.zeros((0, 5, 2), np.float32))
    assert out.shape == (0, 112, 112, 3) and out.dtype == np.uint8
    grey = align_faces(np.zeros((100, 100), np.uint8), ARCFACE_TEMPLATE[None])
    assert grey.shape == (1, 112, 112)
    with pytest.raises(ValueError):
        estimate_norm(np.zeros((4, 2)))
