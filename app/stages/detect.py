"""Detect: frames in, Detections out (letterbox, infer, decode, NMS inside the detector adapter).

NMS sits with decoding rather than in the align stage: both are one vectorised pass over thousands
of candidate boxes, which would otherwise cross a process boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from app.protocol import Context, Stage
from app.settings import Settings
from app.stages.models import model_kwargs, stage_threads
from app.types import Faces
from engines.align import align_faces
from engines.model_zoo import load_detector
from engines.types import Detections

log = logging.getLogger("facestream.stage")


class Detect:
    def __init__(self, settings: Settings, warn: Callable[[str], None] | None = None,
                 threads: int | None = None) -> None:
        self.min_face = settings.min_face
        self.detector = load_detector(
            settings.detector_model, settings.detector_backend, **model_kwargs(settings, warn, threads),
            input_size=(settings.det_size, settings.det_size), score_threshold=settings.det_threshold,
            nms_threshold=settings.nms_threshold, max_faces=settings.max_faces,
        )

    @property
    def backend(self):
        return self.detector.backend

    def register_frames(self, memory: np.ndarray) -> bool:
        """Let the GPU detector upload frames that live in ``memory`` (a frame ring) without a host copy."""
        register = getattr(self.detector, "register_host_memory", None)
        return bool(register and self.backend.on_gpu and register(memory))

    def close(self) -> None:
        unregister = getattr(self.detector, "unregister_host_memory", None)
        if unregister:
            unregister()

    def warmup(self, height: int, width: int, batches: int = 1) -> None:
        """Load kernels and capture CUDA graphs of every batch size up to ``batches`` before the first frame
        (GPU backends only)."""
        if self.backend.on_gpu:
            for b in range(1, batches + 1):
                self([np.zeros((height, width, 3), np.uint8)] * b)
        if self.aligns:  # an empty frame has no face to warp: load the warp's kernels with a made-up one
            import torch

            from engines.align import template
            from engines.gpu.align import warp_faces

            frame = torch.zeros((1, height, width, 3), dtype=torch.uint8, device=self.detector.device)
            warp_faces(frame, [template()[None]])

    @property
    def aligns(self) -> bool:
        """The detector also cuts each face's aligned crop, on the GPU from the frame it uploaded: the align
        stage then only passes the crops on (the CPU warp cost 1-2 ms per 1080p frame of ~10 faces)."""
        return self.backend.on_gpu and hasattr(self.detector, "detect_align_batch")

    def detect_checked(self, frames: list[np.ndarray], still_valid,
                       crops: list | None = None) -> list[Detections | None]:
        """Detect in frames read from shared memory. ``still_valid()`` returns one bool per frame, False
        where it was overwritten while being read (asked once the pixels have been consumed: letterboxed or
        uploaded); such a frame's result is None. With ``crops`` (a list, and ``aligns``) it receives each
        frame's aligned face crops, row for row with its detections."""
        if hasattr(self.detector, "preprocess"):
            batch, infos = self.detector.preprocess(frames)
            valid = list(still_valid())
            if not any(valid):
                return [None] * len(frames)
            dets = self.infer(batch, infos)
        else:  # GPU fast path: the upload is the first step
            if crops is not None and self.aligns:
                dets, warped = self.detector.detect_align_batch(frames)
                dets, warped = self._filter(dets, warped)
                crops.extend(warped)
            else:
                dets = self._filter(self.detector.detect_batch(frames))
            valid = list(still_valid())
        return [d if ok else None for d, ok in zip(dets, valid)]

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        return self.detect_checked(frames, lambda: [True] * len(frames))  # type: ignore[return-value]

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

    def __init__(self, settings: Settings, ring_sizes: list[tuple[int, int]], aligns: bool = False) -> None:
        self.settings = settings
        self.ring_sizes = ring_sizes
        self.aligns = aligns
        self.batch_size = settings.detect_batch
        self.batch_wait = settings.batch_wait_ms / 1000.0
        self.detect: Detect | None = None

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.detect = Detect(self.settings, threads=stage_threads(self.settings))
        pinned = sum(self.detect.register_frames(memory) for memory in ctx.frame_memory())
        self.gpu_align = self.aligns and self.detect.aligns
        for h, w in dict.fromkeys(self.ring_sizes):
            self.detect.warmup(h, w, self.batch_size)
        log.info("detector: %s %s%s%s", self.settings.detector_model, self.detect.backend.describe(),
                 f"; {pinned} frame ring(s) page-locked for direct uploads" if pinned else "",
                 "; faces aligned on the GPU" if self.gpu_align else "")

    def process_batch(self, frames: list[np.ndarray | None], recs: list[Faces]) -> list[Faces | None]:
        crops: list[np.ndarray] | None = [] if self.gpu_align else None
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
