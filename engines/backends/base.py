"""The one small interface every inference backend implements: a batch in, arrays out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Backend(ABC):
    """Runs one model. ``run`` takes a float32 NCHW batch and returns the model's outputs, in the
    order of the model's ONNX outputs, as numpy arrays on the host.

    Backends hold their own device state (sessions, modules, CUDA buffers); create them inside the
    process that uses them.
    """

    #: registry name: "onnxruntime", "pytorch" or "tensorrt"
    name: str = ""
    #: "cpu" or "cuda:N"
    device: str = "cpu"
    #: precision of the arithmetic: "fp32" or "fp16"
    precision: str = "fp32"
    #: largest batch the backend accepts in one call (None: any)
    max_batch: int | None = None

    @abstractmethod
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Infer one batch; ``batch`` is float32 (N, 3, H, W)."""

    def close(self) -> None:
        """Release device resources (idempotent)."""

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def describe(self) -> str:
        return f"{self.name}[{self.device},{self.precision}]"
