"""SCRFD-500MF (with keypoints) adapter: insightface's alternative detector, anchor-free decoding.

The ONNX has 9 outputs grouped by kind then stride: scores 8/16/32, boxes 8/16/32, keypoints
8/16/32, each (N, P_s, k) with 2 anchors per feature-map cell. Boxes are distances (left, top,
right, bottom) and keypoints offsets from the cell's top-left corner, in units of the stride.
"""

from __future__ import annotations

import numpy as np

from engines.backends.base import Backend
from engines.detectors.base import FaceDetectorAdapter
from engines.letterbox import LetterboxInfo
from engines.types import Detections

STRIDES = (8, 16, 32)
NUM_ANCHORS = 2
INPUT_MEAN = 127.5
INPUT_STD = 128.0


def anchor_centres(height: int, width: int, stride: int) -> np.ndarray:
    """(P, 2) x, y of each anchor for one stride, row-major, each cell repeated per anchor."""
    fh, fw = -(-height // stride), -(-width // stride)
    ys, xs = np.meshgrid(np.arange(fh) * stride, np.arange(fw) * stride, indexing="ij")
    c = np.stack([xs, ys], axis=-1).reshape(-1, 1, 2)
    return np.repeat(c, NUM_ANCHORS, axis=1).reshape(-1, 2).astype(np.float32)


class SCRFD(FaceDetectorAdapter):
    """Faces from SCRFD-500M with keypoints. See ``FaceDetectorAdapter`` for sizes and ordering."""

    pad_value = (0.0, 0.0, 0.0)  # black, as insightface pads

    def __init__(
        self,
        backend: Backend,
        input_size: int | tuple[int, int] | None = (640, 640),
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        max_faces: int | None = None,
    ) -> None:
        super().__init__(backend, input_size, score_threshold, nms_threshold, max_faces)
        self._centres: dict[tuple[int, int], list[np.ndarray]] = {}

    def centres(self, height: int, width: int) -> list[np.ndarray]:
        key = (height, width)
        cached = self._centres.get(key)
        if cached is None:
            if len(self._centres) >= 16:
                self._centres.clear()
            cached = self._centres[key] = [anchor_centres(height, width, s) for s in STRIDES]
        return cached

    def _normalise(self, padded: np.ndarray, out: np.ndarray) -> None:
        # BGR → RGB by reversing the channel axis, then (x - 127.5) / 128
        np.subtract(padded.transpose(2, 0, 1)[::-1], INPUT_MEAN, out=out, dtype=np.float32)
        out *= 1.0 / INPUT_STD

    def postprocess(self, outputs: list[np.ndarray], infos: list[LetterboxInfo]) -> list[Detections]:
        if len(outputs) != 3 * len(STRIDES):
            raise ValueError(f"SCRFD expects {3 * len(STRIDES)} outputs (scores, boxes, keypoints), got {len(outputs)}")
        outputs = [o if o.ndim == 3 else o[None] for o in outputs]
        if [o.shape[-1] for o in outputs] != [1] * len(STRIDES) + [4] * len(STRIDES) + [10] * len(STRIDES):
            raise ValueError(
                f"SCRFD outputs have widths {[o.shape[-1] for o in outputs]}: expected scores, boxes, "
                "keypoints grouped by kind (1, 1, 1, 4, 4, 4, 10, 10, 10)"
            )
        n = len(STRIDES)
        scores_l, boxes_l, kps_l = outputs[:n], outputs[n:2 * n], outputs[2 * n:]
        info0 = infos[0]
        centres = self.centres(info0.input_h, info0.input_w)
        for c, s in zip(centres, scores_l):
            if s.shape[1] != len(c):
                raise ValueError(
                    f"SCRFD output has {s.shape[1]} anchors at a stride, expected {len(c)} for input "
                    f"{info0.input_h}x{info0.input_w}: the backend's model is not this detector"
                )
        results = []
        for b, info in enumerate(infos):
            boxes, scores, points = [], [], []
            for stride, c, sc, bx, kp in zip(STRIDES, centres, scores_l, boxes_l, kps_l):
                idx = np.flatnonzero(sc[b, :, 0] >= self.score_threshold)
                if idx.size == 0:
                    continue
                cc = c[idx]
                d = bx[b, idx] * stride
                boxes.append(np.concatenate([cc - d[:, :2], cc + d[:, 2:]], axis=1))
                points.append(cc[:, None, :] + kp[b, idx].reshape(-1, 5, 2) * stride)
                scores.append(sc[b, idx, 0])
            if not scores:
                results.append(Detections.empty())
                continue
            boxes_a, scores_a, points_a = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
            top = self._candidates(scores_a)
            results.append(self._finish(boxes_a[top], scores_a[top], points_a[top], info))
        return results
