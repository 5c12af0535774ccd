"""Constant-velocity Kalman filter on (cx, cy, aspect, height), as SORT and ByteTrack use it.

State per track: (cx, cy, a, h, vcx, vcy, va, vh). Process and measurement noise scale with the box
height, so a big close face and a small far one are trusted alike. Every function works on a batch of
tracks at once ((N, 8) means, (N, 8, 8) covariances): a frame with twenty faces costs one numpy call per
step, not twenty.
"""

from __future__ import annotations

import numpy as np

STD_POS = 1.0 / 20  # position noise, as a fraction of the box height
STD_VEL = 1.0 / 160  # velocity noise, as a fraction of the box height

# 95 % gate of the squared Mahalanobis distance (chi-square quantiles), for 4 (full box) and 2 (centre only)
# degrees of freedom
GATE_4 = 9.4877
GATE_2 = 5.9915


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x1y1x2y2 boxes to (N, 4) centre x, centre y, aspect (w/h), height."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.empty_like(boxes)
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    out[:, 0] = boxes[:, 0] + w / 2
    out[:, 1] = boxes[:, 1] + h / 2
    out[:, 2] = w / h
    out[:, 3] = h
    return out


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """(N, 4) centre x, centre y, aspect, height to (N, 4) x1y1x2y2 boxes."""
    xyah = np.asarray(xyah, np.float64).reshape(-1, 4)
    half = np.empty((len(xyah), 2))
    half[:, 1] = xyah[:, 3] / 2
    half[:, 0] = xyah[:, 2] * half[:, 1]
    return np.concatenate([xyah[:, :2] - half, xyah[:, :2] + half], axis=1)


def _diag(std: np.ndarray) -> np.ndarray:
    """(N, k) standard deviations to (N, k, k) diagonal covariances."""
    out = np.zeros(std.shape + (std.shape[1],))
    idx = np.arange(std.shape[1])
    out[:, idx, idx] = std**2
    return out


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from (N, 4) xyah measurements: zero velocity, uncertainty proportional to the height."""
    z = np.asarray(measurements, np.float64).reshape(-1, 4)
    h = z[:, 3]
    means = np.concatenate([z, np.zeros_like(z)], axis=1)
    std = np.stack([2 * STD_POS * h, 2 * STD_POS * h, np.full_like(h, 1e-2), 2 * STD_POS * h,
                    10 * STD_VEL * h, 10 * STD_VEL * h, np.full_like(h, 1e-5), 10 * STD_VEL * h], axis=1)
    return means, _diag(std)


def multi_predict(means: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Advance (N, 8) means and (N, 8, 8) covariances by one frame; returns new arrays."""
    if len(means) == 0:
        return means.copy(), covs.copy()
    h = means[:, 3]
    std = np.stack([STD_POS * h, STD_POS * h, np.full_like(h, 1e-2), STD_POS * h,
                    STD_VEL * h, STD_VEL * h, np.full_like(h, 1e-5), STD_VEL * h], axis=1)
    means = means.copy()
    means[:, :4] += means[:, 4:]
    # F P F^T for F = [[I, I], [0, I]], written out by blocks: P = [[A, B], [B^T, D]]
    a, b, d = covs[:, :4, :4], covs[:, :4, 4:], covs[:, 4:, 4:]
    bt = b.transpose(0, 2, 1)
    out = np.empty_like(covs)
    out[:, :4, :4] = a + b + bt + d
    out[:, :4, 4:] = b + d
    out[:, 4:, :4] = bt + d
    out[:, 4:, 4:] = d
    idx = np.arange(8)
    out[:, idx, idx] += std**2
    return means, out


def project(means: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The states as (N, 4) measurement means and (N, 4, 4) innovation covariances (state + measurement noise)."""
    h = means[:, 3]
    r = np.stack([STD_POS * h, STD_POS * h, np.full_like(h, 1e-1), STD_POS * h], axis=1) ** 2
    s = covs[:, :4, :4].copy()
    idx = np.arange(4)
    s[:, idx, idx] += r
    return means[:, :4], s


def multi_update(means: np.ndarray, covs: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct N tracks with their N matched (N, 4) xyah measurements; returns new arrays."""
    if len(means) == 0:
        return means.copy(), covs.copy()
    z = np.asarray(measurements, np.float64).reshape(-1, 4)
    proj_mean, s = project(means, covs)
    pht_t = covs[:, :4, :]  # (P H^T)^T, since H selects the first four state entries
    gain_t = np.linalg.solve(s, pht_t)  # K^T = S^-1 (P H^T)^T, S symmetric
    gain = gain_t.transpose(0, 2, 1)
    means = means + np.einsum("nij,nj->ni", gain, z - proj_mean)
    covs = covs - gain @ pht_t  # P - K S K^T, with K S = P H^T
    return means, covs


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One track, one frame ahead."""
    m, c = multi_predict(mean[None], cov[None])
    return m[0], c[0]


def update(mean: np.ndarray, cov: np.ndarray, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One track corrected by one xyah measurement."""
    m, c = multi_update(mean[None], cov[None], np.asarray(measurement)[None])
    return m[0], c[0]


def gating_distance(mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray,
                    only_position: bool = False) -> np.ndarray:
    """Squared Mahalanobis distance from one track to (M, 4) xyah measurements.

    Compare with ``GATE_4`` (or ``GATE_2`` with ``only_position``) to rule out matches the motion model
    finds implausible; ByteTrack itself gates on IoU only, so the tracker does not call this.
    """
    proj_mean, s = project(mean[None], cov[None])
    proj_mean, s = proj_mean[0], s[0]
    z = np.asarray(measurements, np.float64).reshape(-1, 4)
    if only_position:
        proj_mean, s, z = proj_mean[:2], s[:2, :2], z[:, :2]
    chol = np.linalg.cholesky(s)
    d = np.linalg.solve(chol, (z - proj_mean).T)
    return np.sum(d * d, axis=0)
