"""Detect: frames in, Detections out (letterbox, infer, decode, NMS inside the detector adapter).

NMS sits with decoding rather than in the align stage: both are one vectorised pass over thousands
of candidate boxes, which would otherwise cross a process boundary.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from app.settings import Settings, usable_cores
from engines.model_zoo import load_detector
from engines.types import Detections


def model_kwargs(settings: Settings, warn: Callable[[str], None] | None = None, threads: int | None = None) -> dict:
    """What every model load takes from the settings: checkpoints, device, precision, strictness, CPU threads."""
    return {
        "checkpoint_dir": settings.checkpoint_dir,
        "device": settings.device,
        "precision": settings.gpu_precision,
        "strict_gpu": settings.strict_gpu,
        "warn": warn,
        "backend_opts": {"threads": threads, "det_size": (settings.det_size, settings.det_size),
                         "compile_mode": "default" if settings.gpu_compile else None},
    }


def stage_threads(settings: Settings) -> int:
    """CPU threads for one of the two inference stages that run side by side in the pipeline."""
    return settings.infer_threads or max(1, usable_cores() // 2)


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
