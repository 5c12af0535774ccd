"""Aspect-preserving resize into a fixed network input, and the exact way back.

The image is scaled to fit inside (H, W) and anchored at the top-left corner (padding on the
bottom/right) unless ``center=True``. Coordinates are continuous pixel-edge coordinates (pixel i
spans [i, i+1)), the convention cv2.resize uses, so the mapping in both directions is the affine
``x_lb = x * scale_x + pad_x``. Scales are stored per axis: rounding the resized size makes them
differ by a hair from the nominal scale, and using the true ones keeps the back-mapping exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class LetterboxInfo:
    """How one original image was placed in the network input."""

    scale_x: float  # resized width / original width
    scale_y: float  # resized height / original height
    pad_x: int  # left offset of the image in the input
    pad_y: int  # top offset of the image in the input
    orig_w: int
    orig_h: int
    input_w: int
    input_h: int

    @property
    def scale(self) -> float:
        """Nominal (isotropic) scale; the per-axis ones are what the mapping uses."""
        return min(self.scale_x, self.scale_y)

    @property
    def resized_size(self) -> tuple[int, int]:
        """(width, height) of the image inside the input."""
        return round(self.orig_w * self.scale_x), round(self.orig_h * self.scale_y)


def fit_scale(orig_hw: tuple[int, int], size_hw: tuple[int, int]) -> float:
    """The largest scale that fits an (h, w) image inside (H, W)."""
    return min(size_hw[0] / orig_hw[0], size_hw[1] / orig_hw[1])


def letterbox_info(
    orig_hw: tuple[int, int], size_hw: tuple[int, int], center: bool = False, scale: float | None = None
) -> LetterboxInfo:
    """Placement of an (h, w) image in an (H, W) input, without touching pixels."""
    h, w = int(orig_hw[0]), int(orig_hw[1])
    H, W = int(size_hw[0]), int(size_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"letterbox: empty image of size {w}x{h}")
    if scale is None:
        s = fit_scale((h, w), (H, W))
        nw, nh = min(W, max(1, round(w * s))), min(H, max(1, round(h * s)))
    else:  # a forced scale may overflow the input: the overflow is cropped off bottom/right
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    px, py = (max(0, (W - nw) // 2), max(0, (H - nh) // 2)) if center else (0, 0)
    return LetterboxInfo(nw / w, nh / h, px, py, w, h, W, H)


def letterbox(
    image: np.ndarray,
    size: tuple[int, int],
    pad_value: float | tuple[float, float, float] = 0,
    center: bool = False,
    scale: float | None = None,
    interpolation: int = cv2.INTER_LINEAR,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize ``image`` (H0, W0, C) into ``size`` = (H, W) keeping its aspect ratio.

    ``scale`` forces a scale instead of the best fit (1.0 pads only; the image is cropped at the
    input's edge if it does not fit). ``out`` lets the caller give a preallocated (H, W, C) buffer.
    """
    info = letterbox_info(image.shape[:2], size, center=center, scale=scale)
    nw, nh = info.resized_size
    H, W = info.input_h, info.input_w
    shape = (H, W) + image.shape[2:]
    if out is not None and (out.shape != shape or out.dtype != image.dtype):
        raise ValueError(f"letterbox: out is {out.dtype}{out.shape}, expected {image.dtype}{shape}")
    if (nw, nh) == (info.orig_w, info.orig_h):
        resized = image
    else:
        resized = cv2.resize(image, (nw, nh), interpolation=interpolation)
    x0, y0 = info.pad_x, info.pad_y
    resized = resized[: H - y0, : W - x0]  # only a forced scale can overflow the input
    rh, rw = resized.shape[:2]
    value = tuple(float(v) for v in np.broadcast_to(np.asarray(pad_value, dtype=np.float64), (3,)))
    # copyMakeBorder pads in C: ~30x faster than numpy broadcasting a colour over the strips
    out = cv2.copyMakeBorder(resized, y0, H - y0 - rh, x0, W - x0 - rw, cv2.BORDER_CONSTANT, dst=out, value=value)
    return out, info


def boxes_to_original(boxes: np.ndarray, info: LetterboxInfo, clip: bool = False) -> np.ndarray:
    """Map (N, 4) x1y1x2y2 boxes from letterbox to original-image coordinates (new float32 array)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    off = np.array([info.pad_x, info.pad_y, info.pad_x, info.pad_y], dtype=np.float32)
    inv = np.array([1 / info.scale_x, 1 / info.scale_y] * 2, dtype=np.float32)
    out = (b - off) * inv
    if clip:
        np.clip(out[:, 0::2], 0, info.orig_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, info.orig_h, out=out[:, 1::2])
    return out


def points_to_original(points: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map (..., 2) x, y points from letterbox to original-image coordinates (new float32 array)."""
    p = np.asarray(points, dtype=np.float32)
    return (p - np.array([info.pad_x, info.pad_y], dtype=np.float32)) * np.array(
        [1 / info.scale_x, 1 / info.scale_y], dtype=np.float32
    )
