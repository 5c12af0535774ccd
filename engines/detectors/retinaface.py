"""RetinaFace MobileNet-0.25 adapter: letterbox + mean subtraction in, prior-box decoding out.

Works on any backend that runs ``retinaface_net`` (its ONNX export on ONNX Runtime / TensorRT, or
the module itself on PyTorch); imports no torch, so the CPU ONNX path needs none.
"""

from __future__ import annotations

import numpy as np

from engines.backends.base import Backend
from engines.detectors.base import FaceDetectorAdapter
from engines.letterbox import LetterboxInfo
from engines.types import Detections

MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
#: BGR means the network was trained with (no std scaling)
MEAN_BGR = (104.0, 117.0, 123.0)


def prior_boxes(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Anchor centres and sizes in input pixels, (P, 2) each, in the network's output order
    (level, row, column, anchor). Feature maps are ceil(size / step), as the strided convs give."""
    centres, sizes = [], []
    for step, mins in zip(STEPS, MIN_SIZES):
        fh, fw = -(-height // step), -(-width // step)
        ys, xs = np.meshgrid((np.arange(fh) + 0.5) * step, (np.arange(fw) + 0.5) * step, indexing="ij")
        c = np.stack([xs, ys], axis=-1).reshape(-1, 1, 2)
        c = np.repeat(c, len(mins), axis=1).reshape(-1, 2)
        s = np.tile(np.repeat(np.asarray(mins, dtype=np.float64), 2).reshape(1, -1, 2), (fh * fw, 1, 1))
        centres.append(c)
        sizes.append(s.reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32), np.concatenate(sizes).astype(np.float32)


class RetinaFace(FaceDetectorAdapter):
    """Faces from RetinaFace MobileNet-0.25. See ``FaceDetectorAdapter`` for sizes and ordering."""

    pad_value = MEAN_BGR  # padding becomes exactly 0 after mean subtraction, like the convs' own padding

    def __init__(
        self,
        backend: Backend,
        input_size: int | tuple[int, int] | None = (640, 640),
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        max_faces: int | None = None,
    ) -> None:
        super().__init__(backend, input_size, score_threshold, nms_threshold, max_faces)
        self._priors: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._mean = np.asarray(MEAN_BGR, dtype=np.float32).reshape(3, 1, 1)

    def priors(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cached (centres, sizes, sizes * variance[0]) for one input size (few sizes in practice)."""
        key = (height, width)
        cached = self._priors.get(key)
        if cached is None:
            if len(self._priors) >= 16:
                self._priors.clear()
            centres, sizes = prior_boxes(height, width)
            cached = self._priors[key] = (centres, sizes, sizes * VARIANCES[0])
        return cached

    def _normalise(self, padded: np.ndarray, out: np.ndarray) -> None:
        np.subtract(padded.transpose(2, 0, 1), self._mean, out=out)

    def postprocess(self, outputs: list[np.ndarray], infos: list[LetterboxInfo]) -> list[Detections]:
        loc, conf, landms = outputs[:3]
        info0 = infos[0]
        centres, sizes, var_sizes = self.priors(info0.input_h, info0.input_w)
        if loc.shape[1] != len(centres):
            raise ValueError(
                f"RetinaFace output has {loc.shape[1]} priors, expected {len(centres)} for input "
                f"{info0.input_h}x{info0.input_w}: the backend's model is not this detector"
            )
        results = []
        for b, info in enumerate(infos):
            idx = self._candidates(conf[b, :, 1])
            if idx.size == 0:
                results.append(Detections.empty())
                continue
            c, s, vs = centres[idx], sizes[idx], var_sizes[idx]
            l = loc[b, idx]
            xy = c + l[:, :2] * vs
            half = s * np.exp(l[:, 2:] * VARIANCES[1]) * 0.5
            boxes = np.concatenate([xy - half, xy + half], axis=1)
            points = c[:, None, :] + landms[b, idx].reshape(-1, 5, 2) * vs[:, None, :]
            results.append(self._finish(boxes, conf[b, idx, 1], points, info))
        return results
