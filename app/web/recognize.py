"""``POST /api/recognize``: every face of one uploaded image with its box, name and similarity.

The detector and embedder load in the web process on the CPU (ONNX Runtime) at the first request, once: the
pipeline's GPU stages are not disturbed, and a server that never recognises uploads never loads them.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np

from app.settings import Settings
from app.types import UNKNOWN


def cpu_analyzer(settings: Settings):
    from app.stages.models import model_kwargs
    from engines.analyzer import FaceAnalyzer
    from engines.model_zoo import load_detector, load_embedder

    cpu = dataclasses.replace(settings, device="cpu", detector_backend="onnxruntime", embedding_backend="onnxruntime",
                              strict_gpu=False, gpu_precision="fp32")
    kw = model_kwargs(cpu)
    detector = load_detector(cpu.detector_model, "onnxruntime", **kw, input_size=(cpu.det_size, cpu.det_size),
                             score_threshold=cpu.det_threshold, nms_threshold=cpu.nms_threshold)
    embedder = load_embedder(cpu.embedder_model, "onnxruntime", **kw)
    return FaceAnalyzer(detector, embedder, min_face=cpu.min_face)


class Recognizer:
    def __init__(self, settings: Settings, analyzer: Any = None) -> None:
        self.settings = settings
        self._analyzer = analyzer
        self._lock = threading.Lock()

    def analyzer(self):
        with self._lock:
            if self._analyzer is None:
                self._analyzer = cpu_analyzer(self.settings)
            return self._analyzer

    def embed_largest(self, image: np.ndarray) -> np.ndarray | None:
        """The largest face's embedding (the face a search by photo means); None when there is no face."""
        faces = self.analyzer().analyze(image)
        if not len(faces.detections):
            return None
        return np.asarray(faces.embeddings[int(np.argmax(faces.detections.areas))], np.float32)

    def __call__(self, image: np.ndarray, library) -> list[dict]:
        faces = self.analyzer().analyze(image)
        dets = faces.detections
        matches = library.search(faces.embeddings) if len(dets) else []
        rows = []
        for i in range(len(dets)):
            m = matches[i] if i < len(matches) else None
            rows.append({"box": [round(float(v), 1) for v in dets.boxes[i]], "score": round(float(dets.scores[i]), 3),
                         "name": m.name if m else UNKNOWN, "person_id": m.person_id if m else None,
                         "similarity": round(float(m.score), 3) if m else None})
        return rows
