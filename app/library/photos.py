"""Photos to embeddings, in the caller's process: decode, find the one face, embed it (CPU, loaded once).

The gallery owner only stores; the models for an enrolment run where the photos are (the CLI, the web app),
on the CPU with onnxruntime, so a running pipeline's GPU stages are never held up by an upload.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from app.library.errors import BadPhoto

MAX_PHOTO_BYTES = 10 << 20  # an upload or a photo given to enrol: larger is refused (BadPhoto)


def decode_photo(filename: str, data: bytes) -> np.ndarray:
    """The photo as a BGR image; BadPhoto naming the file when it is too large or not an image."""
    import cv2

    if len(data) > MAX_PHOTO_BYTES:
        raise BadPhoto(f"{filename}: {len(data) >> 20} MiB is over the {MAX_PHOTO_BYTES >> 20} MiB limit for a "
                       "photo: send a smaller one")
    if not data:
        raise BadPhoto(f"{filename}: empty file: send a JPEG or PNG photo")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadPhoto(f"{filename}: not an image (or corrupt): send a JPEG or PNG photo")
    return image


class PhotoEmbedder:
    """Detector + embedder on the CPU, made on first use and kept (one per process is enough)."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self._analyzer = None
        self._lock = threading.Lock()

    def analyzer(self):
        with self._lock:
            if self._analyzer is None:
                self._analyzer = _cpu_analyzer(self.settings)
            return self._analyzer

    def embed(self, photos: list[tuple[str, bytes]], largest: bool = False) -> np.ndarray:
        """One embedding per photo (N, 512); BadPhoto naming the first photo that is not an image, holds no
        face, or holds several (unless ``largest``), before anything is embedded."""
        if not photos:
            raise BadPhoto("no photo given: send at least one photo with one face")
        images = [(name, decode_photo(name, data)) for name, data in photos]
        analyzer = self.analyzer()
        rows = []
        for name, image in images:
            faces = analyzer.analyze(image)
            n = len(faces.detections)
            if n == 0:
                raise BadPhoto(f"{name}: no face found: send a photo where the face is clear and frontal")
            if n > 1 and not largest:
                raise BadPhoto(f"{name}: {n} faces: send a photo of one person only")
            rows.append(faces.embeddings[int(np.argmax(faces.detections.areas))])
        return np.stack(rows).astype(np.float32)


def _cpu_analyzer(settings):
    from app.stages.models import model_kwargs
    from engines.analyzer import FaceAnalyzer
    from engines.model_zoo import load_detector, load_embedder

    cpu = dataclasses.replace(settings, device="cpu")
    kw = model_kwargs(cpu)
    detector = load_detector(cpu.detector_model, "onnxruntime", **kw, input_size=(cpu.det_size, cpu.det_size),
                             score_threshold=cpu.det_threshold, nms_threshold=cpu.nms_threshold)
    embedder = load_embedder(cpu.embedder_model, "onnxruntime", **kw)
    return FaceAnalyzer(detector, embedder, min_face=cpu.min_face)
