"""Five-point face alignment to the ArcFace 112×112 template.

The recognisers were trained on crops made by a least-squares similarity transform (rotation,
uniform scale, translation; no reflection, no shear) from the five detected landmarks onto a fixed
template, warped with bilinear interpolation and a black border. Any other crop costs accuracy, so
this reproduces insightface's ``norm_crop`` (skimage ``SimilarityTransform`` + ``cv2.warpAffine``).
"""

from __future__ import annotations

import cv2
import numpy as np

#: ArcFace template for a 112×112 crop: left eye, right eye, nose, left mouth, right mouth
#: (left/right as seen in the image), in pixel coordinates of the crop.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
CROP_SIZE = 112


def template(size: int = CROP_SIZE) -> np.ndarray:
    """The template for a ``size``×``size`` crop, scaled as insightface does (multiples of 112
    scale it; multiples of 128 scale it and centre it with an 8/128 horizontal margin)."""
    if size % 112 == 0:
        return ARCFACE_TEMPLATE.astype(np.float64) * (size / 112.0)
    if size % 128 == 0:
        dst = ARCFACE_TEMPLATE.astype(np.float64) * (size / 128.0)
        dst[:, 0] += 8.0 * size / 128.0
        return dst
    raise ValueError(f"alignment size must be a multiple of 112 or 128, got {size}")


def estimate_norms(landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Similarity transforms (N, 2, 3) float64 mapping each face's landmarks (N, 5, 2) onto the template.

    In 2-D the least-squares similarity without reflection (Umeyama) has a closed form: with points as
    complex numbers z (source) and w (template), centred, the best ``w ≈ a·z + b`` has
    ``a = Σ conj(z)·w / Σ |z|²``. One vectorised expression for all faces instead of an SVD per face.
    """
    src = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    dst = template(size)
    z = src[..., 0] + 1j * src[..., 1]  # (N, 5)
    w = dst[:, 0] + 1j * dst[:, 1]  # (5,)
    z_mean = z.mean(axis=1, keepdims=True)
    w_mean = w.mean()
    zc = z - z_mean
    wc = w - w_mean
    denom = (zc.real**2 + zc.imag**2).sum(axis=1)
    # degenerate landmarks (all at one point) give a zero transform, i.e. a black crop, not NaNs
    a = np.divide((np.conj(zc) * wc).sum(axis=1), denom, out=np.zeros(len(z), np.complex128), where=denom > 1e-12)
    b = w_mean - a * z_mean[:, 0]
    m = np.empty((len(z), 2, 3), dtype=np.float64)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = a.real, -a.imag, b.real
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = a.imag, a.real, b.imag
    return m


def estimate_norm(landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The (2, 3) similarity transform taking one face's landmarks (5, 2) onto the template."""
    landmarks = np.asarray(landmarks)
    if landmarks.shape != (5, 2):
        raise ValueError(f"landmarks must be (5, 2), got {landmarks.shape}")
    return estimate_norms(landmarks[None], size)[0]


def _warp(image: np.ndarray, m: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    if m[0, 0] == 0 and m[1, 0] == 0:  # degenerate landmarks: OpenCV would smear one pixel over the crop
        if out is None:
            return np.zeros((size, size) + image.shape[2:], image.dtype)
        out[...] = 0
        return out
    return cv2.warpAffine(image, m, (size, size), dst=out, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def norm_crop(image: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """One aligned crop (size, size, 3) uint8 from a full-resolution image and its face's landmarks (5, 2)."""
    return _warp(image, estimate_norm(landmarks, size), size)


def align_faces(image: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Aligned crops (N, size, size, 3) uint8 for every face's landmarks (N, 5, 2) in ``image``.

    The transforms are computed together; each warp writes straight into the output batch, which is
    what the embedder consumes, so no per-face arrays are made or copied.
    """
    landmarks = np.asarray(landmarks).reshape(-1, 5, 2)
    out = np.empty((len(landmarks), size, size) + image.shape[2:], dtype=image.dtype)
    if len(landmarks) == 0:
        return out
    if not image.flags.c_contiguous:
        image = np.ascontiguousarray(image)
    for crop, m in zip(out, estimate_norms(landmarks, size)):
        _warp(image, m, size, crop)
    return out
