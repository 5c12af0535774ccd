"""What every detector adapter shares: letterboxed batching, running the backend in chunks, and the
final threshold → NMS → back to original pixels step. Model-specific code only decodes outputs."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from engines.backends.base import Backend
from engines.capabilities import Capabilities
from engines.letterbox import LetterboxInfo, boxes_to_original, letterbox, points_to_original
from engines.nms import nms
from engines.types import Detections

#: networks with strides up to 32 need inputs that are a multiple of 32
STRIDE_MULTIPLE = 32
#: candidates kept before NMS: bounds its cost on pathological frames (as biubug6's top_k)
PRE_NMS_TOPK = 5000


def _parse_size(input_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if input_size is None:
        return None
    h, w = (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))
    if h <= 0 or w <= 0 or h % STRIDE_MULTIPLE or w % STRIDE_MULTIPLE:
        raise ValueError(f"detector input size must be positive multiples of {STRIDE_MULTIPLE}, got {h}x{w}")
    return h, w


def round_up(x: int, m: int = STRIDE_MULTIPLE) -> int:
    return int(math.ceil(x / m) * m)


class FaceDetectorAdapter(ABC):
    """Pre/post-processing around a ``Backend`` running a face detector.

    ``input_size`` is (height, width) of the network input, both multiples of 32 (an int means a
    square); ``None`` runs each batch at its largest image's own size rounded up to a multiple of 32
    (scale 1, padding only) — slower, but finds the tiny faces of big photos.
    Images are letterboxed top-left (padding bottom/right); results are in the original image's
    pixels, boxes clipped to it, sorted by score (highest first), at most ``max_faces`` per image.
    """

    #: per-channel value the padded area gets, in the image's own (BGR uint8) space
    pad_value: tuple[float, float, float] = (0.0, 0.0, 0.0)
    capabilities = Capabilities(splits_preprocess=True)

    def __init__(
        self,
        backend: Backend,
        input_size: int | tuple[int, int] | None = (640, 640),
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        max_faces: int | None = None,
    ) -> None:
        self.backend = backend
        self.input_size = _parse_size(input_size)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_faces = max_faces

    # -- preprocessing -------------------------------------------------------------------------
    def batch_size_for(self, images: list[np.ndarray]) -> tuple[int, int]:
        """(H, W) of the network input for these images."""
        if self.input_size is not None:
            return self.input_size
        return (round_up(max(im.shape[0] for im in images)), round_up(max(im.shape[1] for im in images)))

    @abstractmethod
    def _normalise(self, padded: np.ndarray, out: np.ndarray) -> None:
        """Write the letterboxed uint8 BGR (H, W, 3) image into ``out`` (3, H, W) float32, normalised."""

    def preprocess(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[LetterboxInfo]]:
        """BGR uint8 images → (float32 NCHW batch, one LetterboxInfo per image)."""
        if not images:
            raise ValueError("preprocess: no images")
        H, W = self.batch_size_for(images)
        batch = np.empty((len(images), 3, H, W), dtype=np.float32)
        buf = np.empty((H, W, 3), dtype=np.uint8)
        infos = []
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"detector expects BGR images (H, W, 3), got shape {image.shape}")
            scale = 1.0 if self.input_size is None else None
            padded, info = letterbox(image, (H, W), pad_value=self.pad_value, scale=scale, out=buf)
            self._normalise(padded, batch[i])
            infos.append(info)
        return batch, infos

    # -- inference -----------------------------------------------------------------------------
    def run_backend(self, batch: np.ndarray) -> list[np.ndarray]:
        """``backend.run`` in chunks of at most ``backend.max_batch``; every output comes back as
        (N, P, k), outputs of models exported without a batch axis ((P, k), batch 1) included."""
        limit = self.backend.max_batch or len(batch)
        parts = [self.backend.run(batch[i:i + limit]) for i in range(0, len(batch), limit)]
        parts = [[o if o.ndim == 3 else o[None] for o in outs] for outs in parts]
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        if not images:
            return []
        batch, infos = self.preprocess(images)
        return self.postprocess(self.run_backend(batch), infos)

    def detect(self, image: np.ndarray) -> Detections:
        return self.detect_batch([image])[0]

    def close(self) -> None:
        self.backend.close()

    # -- postprocessing ------------------------------------------------------------------------
    @abstractmethod
    def postprocess(self, outputs: list[np.ndarray], infos: list[LetterboxInfo]) -> list[Detections]:
        """Backend outputs for a batch → one Detections per image, in original-image pixels."""

    def _candidates(self, scores: np.ndarray) -> np.ndarray:
        """Indices of the scores over the threshold, at most PRE_NMS_TOPK of the best."""
        idx = np.flatnonzero(scores >= self.score_threshold)
        if idx.size > PRE_NMS_TOPK:
            idx = idx[np.argpartition(-scores[idx], PRE_NMS_TOPK)[:PRE_NMS_TOPK]]
        return idx

    def _finish(self, boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray,
                info: LetterboxInfo) -> Detections:
        """NMS on candidates in letterbox pixels, then map to the original image and clip boxes."""
        if len(boxes) == 0:
            return Detections.empty()
        keep = nms(boxes, scores, self.nms_threshold, max_keep=self.max_faces)
        return Detections(
            boxes_to_original(boxes[keep], info, clip=True),
            scores[keep],
            points_to_original(landmarks[keep].reshape(-1, 5, 2), info),
        )
