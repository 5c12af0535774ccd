"""Detect: frames in, Detections out (letterbox, infer, decode, NMS inside the detector adapter).

NMS sits with decoding rather than in the align stage: both are one vectorised pass over thousands
of candidate boxes, which would otherwise cross a process boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.protocol import Context, Stage
from app.settings import Settings
from app.stages.models import ModelLoad
from app.types import Faces
from engines.align import align_faces
from engines.model_zoo import load_detector
from engines.types import Detections

log = logging.getLogger("facestream.stage")


@dataclass(frozen=True)
class DetectConfig:
    """What detection takes from the settings (DETECTOR_MODEL, DETECTOR_BACKEND, DET_*, MAX_FACES, MIN_FACE)."""

    model: str
    backend: str
    load: ModelLoad
    score_threshold: float
    nms_threshold: float
    max_faces: int
    min_face: int

    @classmethod
    def of(cls, settings: Settings, threads: int | None = None) -> DetectConfig:
        return cls(settings.detector_model, settings.detector_backend, ModelLoad.of(settings, threads),
                   settings.det_threshold, settings.nms_threshold, settings.max_faces, settings.min_face)


class Detect:
    def __init__(self, config: DetectConfig, warn: Callable[[str], None] | None = None) -> None:
        self.min_face = config.min_face
        size = config.load.det_size
        self.detector = load_detector(
            config.model, config.backend, **config.load.kwargs(warn), input_size=(size, size),
            score_threshold=config.score_threshold, nms_threshold=config.nms_threshold, max_faces=config.max_faces,
        )

    @property
    def backend(self):
        return self.detector.backend

    def register_frames(self, memory: np.ndarray) -> bool:
        """Let the GPU detector upload frames that live in ``memory`` (a frame ring) without a host copy."""
        caps = self.detector.capabilities
        return bool(caps.registers_host_memory and self.backend.on_gpu and self.detector.register_host_memory(memory))

    def close(self) -> None:
        if self.detector.capabilities.registers_host_memory:
            self.detector.unregister_host_memory()

    def warmup(self, height: int, width: int, batches: int = 1) -> None:
        """Load kernels and capture CUDA graphs of every batch size up to ``batches`` before the first frame
        (GPU backends only)."""
        if self.backend.on_gpu:
            for b in range(1, batches + 1):
                self.detect_checked([np.zeros((height, width, 3), np.uint8)] * b, lambda b=b: [True] * b)
        if self.aligns_on_device:  # an empty frame has no face to warp: load the warp's kernels with a made-up one
            import torch

            from engines.align import template
            from engines.gpu.align import warp_faces

            frame = torch.zeros((1, height, width, 3), dtype=torch.uint8, device=self.detector.device)
            warp_faces(frame, [template()[None]])

    @property
    def aligns_on_device(self) -> bool:
        """The detector can cut each face's aligned crop on the GPU from the frame it uploaded (the CPU warp
        cost 1-2 ms per 1080p frame of ~10 faces): what a list without an align stage relies on."""
        return self.backend.on_gpu and self.detector.capabilities.aligns_on_device

    def detect_checked(self, frames: list[np.ndarray], still_valid,
                       crops: list | None = None) -> list[Detections | None]:
        """Detect in frames read from shared memory. ``still_valid()`` returns one bool per frame, False
        where it was overwritten while being read (asked once the pixels have been consumed: letterboxed or
        uploaded); such a frame's result is None. With ``crops`` (a list, and ``aligns_on_device``) it receives each
        frame's aligned face crops, row for row with its detections."""
        if self.detector.capabilities.splits_preprocess:
            batch, infos = self.detector.preprocess(frames)
            valid = list(still_valid())
            if not any(valid):
                return [None] * len(frames)
            dets = self.infer(batch, infos)
        else:  # GPU fast path: the upload is the first step
            if crops is not None and self.aligns_on_device:
                dets, warped = self.detector.detect_align_batch(frames)
                dets, warped = self._filter(dets, warped)
                crops.extend(warped)
            else:
                dets = self._filter(self.detector.detect_batch(frames))
            valid = list(still_valid())
        return [d if ok else None for d, ok in zip(dets, valid)]

    def infer(self, batch: np.ndarray, infos: list) -> list[Detections]:
        return self._filter(self.detector.postprocess(self.detector.run_backend(batch), infos))

    def _filter(self, dets: list[Detections], crops: list[np.ndarray] | None = None):
        """Drop faces narrower than MIN_FACE (and their crops, when given: then returns both lists)."""
        if self.min_face:
            keep = [(d.boxes[:, 2] - d.boxes[:, 0]) >= self.min_face if len(d) else None for d in dets]
            dets = [d[k] if k is not None else d for d, k in zip(dets, keep)]
            if crops is not None:
                crops = [c[k] if k is not None else c for c, k in zip(crops, keep)]
        return dets if crops is None else (dets, crops)


class DetectStage(Stage):
    """Detection on batches of frames from the rings. ``aligns``: the list has no align stage, so detect also
    cuts each face's aligned crop — on the GPU from the frame it uploaded (the CPU warp cost 1-2 ms per 1080p
    frame of ~10 faces), or, should the detector have fallen back to the CPU, with the CPU warp here."""

    reads_frames = True

    def __init__(self, config: DetectConfig, ring_sizes: list[tuple[int, int]], aligns: bool = False,
                 batch_size: int = 1, batch_wait: float = 0.0) -> None:
        self.config = config
        self.ring_sizes = ring_sizes
        self.aligns = aligns
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.detect: Detect | None = None

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.detect = Detect(self.config)
        pinned = sum(self.detect.register_frames(memory) for memory in ctx.frame_memory())
        for h, w in dict.fromkeys(self.ring_sizes):
            self.detect.warmup(h, w, self.batch_size)
        log.info("detector: %s %s%s%s", self.config.model, self.detect.backend.describe(),
                 f"; {pinned} frame ring(s) page-locked for direct uploads" if pinned else "",
                 "; faces aligned on the GPU" if self.aligns and self.detect.aligns_on_device else "")

    def process_batch(self, frames: list[np.ndarray | None], recs: list[Faces]) -> list[Faces | None]:
        crops: list[np.ndarray] | None = [] if self.aligns and self.detect.aligns_on_device else None
        found = self.detect.detect_checked(frames, lambda: [self.ctx.frame_valid(r.frame) for r in recs], crops)
        out: list[Faces | None] = []
        for k, (frame, rec, dets) in enumerate(zip(frames, recs, found)):
            if dets is None:  # overwritten while we read it: drop, never use torn pixels
                self.ctx.drop()
                continue
            faces = Faces(dets.boxes, dets.scores, dets.landmarks, frame=rec.frame)
            if self.aligns:
                faces.crops = crops[k] if crops is not None else align_faces(frame, dets.landmarks)
            out.append(faces)
        return out

    def teardown(self) -> None:
        if self.detect is not None:
            self.detect.close()  # unlock the rings' pages before the runtime unmaps them
