"""Constant-velocity Kalman filter on (cx, cy, aspect, height), as SORT and ByteTrack use it.

Process and measurement noise scale with the box height, so a big close face and a small far one
are trusted alike; ``multi_predict`` advances every track in one vectorised step.
"""

from __future__ import annotations

import numpy as np

_STD_POS = 1.0 / 20
_STD_VEL = 1.0 / 160

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    xyah = np.asarray(xyah, np.float64).reshape(-1, 4)
    h = xyah[:, 3]
    w = xyah[:, 2] * h
    return np.stack([xyah[:, 0] - w / 2, xyah[:, 1] - h / 2, xyah[:, 0] + w / 2, xyah[:, 1] + h / 2], axis=1)


def initiate(measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """State and covariance of a new track from one (cx, cy, a, h) measurement."""
    mean = np.r_[measurement, np.zeros(4)]
    h = measurement[3]
    std = np.array([2 * _STD_POS * h, 2 * _STD_POS * h, 1e-2, 2 * _STD_POS * h,
                    10 * _STD_VEL * h, 10 * _STD_VEL * h, 1e-5, 10 * _STD_VEL * h])
    return mean, np.diag(std**2)


def multi_predict(means: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Advance (N, 8) means and (N, 8, 8) covariances by one frame."""
    if len(means) == 0:
        return means, covs
    h = means[:, 3]
    std = np.stack([_STD_POS * h, _STD_POS * h, np.full_like(h, 1e-2), _STD_POS * h,
                    _STD_VEL * h, _STD_VEL * h, np.full_like(h, 1e-5), _STD_VEL * h], axis=1)
    q = np.zeros((len(means), 8, 8))
    idx = np.arange(8)
    q[:, idx, idx] = std**2
    means = means @ _F.T
    covs = _F @ covs @ _F.T + q
    return means, covs


def update(mean: np.ndarray, cov: np.ndarray, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct one track with its matched measurement."""
    h = mean[3]
    r = np.diag(np.array([_STD_POS * h, _STD_POS * h, 1e-1, _STD_POS * h]) ** 2)
    proj_mean = _H @ mean
    proj_cov = _H @ cov @ _H.T + r
    gain = np.linalg.solve(proj_cov, (cov @ _H.T).T).T
    mean = mean + gain @ (measurement - proj_mean)
    cov = cov - gain @ proj_cov @ gain.T
    return mean, cov
