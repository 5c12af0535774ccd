"""Five-point face alignment on the GPU: the warp of ``engines.align`` (insightface's ``norm_crop``) done with
``F.affine_grid`` + ``F.grid_sample`` on frames that are already on the device, so that only the 112x112
crops come back to the host, never the frame.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from engines.align import CROP_SIZE, estimate_norms


def sampling_grid_theta(transforms: np.ndarray, frame_hw: tuple[int, int], size: int = CROP_SIZE) -> np.ndarray:
    """``F.affine_grid`` matrices (N, 2, 3) for crops made by cv2.warpAffine with forward transforms
    ``transforms`` (N, 2, 3) (frame pixels → crop pixels).

    warpAffine fills crop pixel p from frame point M⁻¹·p (pixel centres at integer coordinates);
    affine_grid (align_corners=False) works in normalised coordinates where pixel i of n sits at
    (2i + 1)/n − 1. So theta = N_frame · M⁻¹ · N_crop⁻¹. Degenerate transforms (all-zero, from
    coincident landmarks) point every sample far outside the frame: a black crop, as ``engines.align`` gives.
    """
    m = np.asarray(transforms, dtype=np.float64).reshape(-1, 2, 3)
    n = len(m)
    full = np.zeros((n, 3, 3))
    full[:, :2] = m
    full[:, 2, 2] = 1.0
    det = full[:, 0, 0] * full[:, 1, 1] - full[:, 0, 1] * full[:, 1, 0]
    ok = np.abs(det) > 1e-12
    inv = np.zeros_like(full)
    inv[ok] = np.linalg.inv(full[ok])
    h, w = frame_hw

    def norm(width: float, height: float) -> np.ndarray:  # pixel index → normalised coordinate
        return np.array([[2.0 / width, 0, 1.0 / width - 1], [0, 2.0 / height, 1.0 / height - 1], [0, 0, 1]])

    theta = norm(w, h) @ inv @ np.linalg.inv(norm(size, size))
    theta[~ok] = np.array([[0, 0, -10.0], [0, 0, -10.0], [0, 0, 1]])
    return theta[:, :2].astype(np.float32)


def warp_frame(frame: torch.Tensor, landmarks: np.ndarray, size: int = CROP_SIZE) -> torch.Tensor:
    """Aligned crops (N, 3, size, size) float32 BGR (0..255, not rounded) from a (H, W, 3) uint8 frame on the
    device and each face's landmarks (N, 5, 2) in its pixels. All faces in one grid_sample: the N sampling
    grids are stacked into one tall (N·size, size) output image."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    n = len(landmarks)
    h, w = frame.shape[:2]
    if n == 0:
        return torch.zeros((0, 3, size, size), device=frame.device)
    theta = torch.from_numpy(sampling_grid_theta(estimate_norms(landmarks, size), (h, w), size))
    grid = F.affine_grid(theta.to(frame.device, non_blocking=True), [n, 1, size, size], align_corners=False)
    image = frame.permute(2, 0, 1)[None].float()
    crops = F.grid_sample(image, grid.reshape(1, n * size, size, 2), mode="bilinear",
                          padding_mode="zeros", align_corners=False)
    return crops[0].reshape(3, n, size, size).transpose(0, 1)


def warp_faces(frames: torch.Tensor, landmarks: list[np.ndarray], size: int = CROP_SIZE) -> list[np.ndarray]:
    """Aligned uint8 BGR crops (n_i, size, size, 3), one array per frame, of the faces at ``landmarks[i]``
    (n_i, 5, 2) in frame i of ``frames`` (B, H, W, 3) uint8 on the device (``warp_frame`` on each), rounded
    to uint8 like cv2.warpAffine (which interpolates in fixed point: pixels may differ from it by one level)."""
    counts = [len(lm) for lm in landmarks]
    if not sum(counts):
        return [np.zeros((0, size, size, 3), np.uint8) for _ in counts]
    with torch.inference_mode():
        parts = [warp_frame(frames[i], lm, size).permute(0, 2, 3, 1) for i, lm in enumerate(landmarks) if len(lm)]
        crops = torch.cat(parts).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()
    bounds = np.cumsum([0, *counts])
    return [crops[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
