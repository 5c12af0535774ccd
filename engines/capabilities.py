"""What a loaded detector or embedder can do, declared by the model class instead of probed with ``hasattr``.

Every detector and embedder ``engines.model_zoo`` returns satisfies ``FaceDetector`` / ``FaceEmbedder`` and
carries a ``capabilities`` record; a flag that is True promises the matching method (a test holds every model
class to its declaration). Callers branch on the flags, so a renamed method fails loudly in that test instead
of silently turning a fast path off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from engines.backends.base import Backend
from engines.types import Detections


@dataclass(frozen=True)
class Capabilities:
    """Optional abilities beyond ``detect``/``embed``; all off by default."""

    #: ``detect_align_batch(frames)``: each face's aligned crop, warped on the device from the frame it uploaded
    aligns_on_device: bool = False
    #: ``register_host_memory(array)`` / ``unregister_host_memory()``: upload from that memory with no host copy
    registers_host_memory: bool = False
    #: ``preprocess(frames)`` / ``run_backend(batch)`` / ``postprocess(outputs, infos)`` as separate steps (the
    #: CPU adapters): a caller can check its frames between the letterbox and the network
    splits_preprocess: bool = False
    #: ``embed_async(crops)``: returns at once with a callable that waits for the embeddings
    embeds_async: bool = False
    #: the padded batch sizes it runs (one CUDA graph each, worth warming up); () when any batch runs as it is
    batch_buckets: tuple[int, ...] = ()


#: what a method name each flag promises, for checks and error messages
PROMISED_METHODS = {
    "aligns_on_device": ("detect_align_batch",),
    "registers_host_memory": ("register_host_memory", "unregister_host_memory"),
    "splits_preprocess": ("preprocess", "run_backend", "postprocess"),
    "embeds_async": ("embed_async",),
}


@runtime_checkable
class FaceDetector(Protocol):
    """A face detector: uint8 BGR frames in, ``Detections`` in each frame's pixels out."""

    capabilities: Capabilities
    #: what runs the network (for ``describe()`` and ``on_gpu``)
    backend: Backend

    def detect(self, image: np.ndarray) -> Detections: ...

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]: ...

    def close(self) -> None: ...


@runtime_checkable
class FaceEmbedder(Protocol):
    """An ArcFace embedder: aligned uint8 crops (N, 112, 112, 3) in, (N, embedding_size) unit vectors out."""

    capabilities: Capabilities
    backend: Backend
    embedding_size: int

    def embed(self, crops: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...
