"""TensorRT backend: a serialised engine run with ``execute_async_v3`` on one CUDA stream.

Everything device-side is created in the process that runs the model, when the backend is constructed: the
device (``engines.backends.cuda_runtime``, cuda-python's runtime API — the one CUDA binding), its stream, and
pinned host + device buffers sized once from the engine profile's largest shapes (``engines.tensorrt.buffers``).
A call copies the batch into the pinned input buffer, sets the input shape, launches, copies the outputs back
and waits: no allocation on the device or in pinned memory per call. Importing this module needs neither
TensorRT nor cuda-python nor a GPU; anything missing is a ``BackendUnavailable`` with a one-line reason at
construction, so the registry can fall back to the next backend. The registry's factory is
``engines.backends.tensorrt_factory.create``.

Not executed in this project's CI or on the lent GPUs: TensorRT-RTX (the TensorRT we can install) runs engines
on compute capability 8.0/8.6/8.9/12.x only, and the lent GPUs are Hopper (9.0). The binding and buffer layer
is tested against a fake CUDA runtime and a fake engine (tests/engines/tensorrt/test_runtime_fake.py);
engine execution on a real GPU was not. See docs/gpu.md.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from engines.backends.base import Backend
from engines.backends.cuda_runtime import CudaRuntime, open_cuda
from engines.device import parse_device
from engines.errors import BackendUnavailable, EngineError, NoCudaGpu


def cuda_index(device: str) -> int:
    """The CUDA ordinal for ``device`` ("auto" and "cuda" are 0); NoCudaGpu for "cpu"."""
    parsed = parse_device(device)
    if parsed.is_cpu:
        raise NoCudaGpu("TensorRT runs on an NVIDIA GPU only, and device cpu was asked for")
    return parsed.index


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else "no error reported by TensorRT"


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(
        self,
        engine_path: str | Path,
        device: str = "cuda:0",
        expected: dict | None = None,
        api: Any = None,
        cuda: CudaRuntime | None = None,
    ) -> None:
        """Load ``engine_path`` (refused unless its JSON agrees with ``expected`` and its bytes).

        ``api`` (a TrtApi) and ``cuda`` (an open CudaRuntime, now owned by the backend) are injectable.
        """
        from engines.tensorrt.api import load_trt

        self._cuda: CudaRuntime | None = None
        self._closed = False
        api = api or load_trt()
        index = cuda_index(device)
        self._cuda = cuda or open_cuda(index)
        self._thread = threading.get_ident()
        try:
            self._setup(api, Path(engine_path), expected, index)
        except BaseException:
            self.close()
            raise

    def _setup(self, api: Any, engine_path: Path, expected: dict | None, index: int) -> None:
        from engines.tensorrt.api import make_logger
        from engines.tensorrt.buffers import EngineBuffers
        from engines.tensorrt.cache import load_engine_bytes
        from engines.tensorrt.validate import check_gpu, check_meta, check_validity

        cuda = self._cuda
        check_gpu(api, cuda.gpu_name, cuda.cc)
        try:
            data, meta = load_engine_bytes(engine_path, expected)
        except EngineError as exc:
            raise BackendUnavailable(str(exc)) from exc
        check_meta(meta, api, cuda.cc, engine_path)
        trt = api.module
        self.logger = make_logger(api)
        self.runtime = trt.Runtime(self.logger)
        check_validity(trt, self.runtime, data, _first_line(self.logger.last_error()), engine_path)
        self.engine = self.runtime.deserialize_cuda_engine(data)
        del data
        if self.engine is None:
            raise BackendUnavailable(
                f"TensorRT cannot load engine {engine_path.name} ({_first_line(self.logger.last_error())}): "
                "rebuild it with `facestream build-engines`")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendUnavailable(f"TensorRT cannot create an execution context for {engine_path.name} "
                                     f"({_first_line(self.logger.last_error())})")
        self.meta = meta
        self.engine_path = engine_path
        self.device = f"cuda:{index}"
        self.precision = meta.get("precision", "fp32")
        self.buffers = EngineBuffers(trt, self.engine, self.context, cuda, meta.get("outputs", []), engine_path)
        self.max_batch = self.buffers.max_batch

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._closed:
            raise EngineError("the TensorRT backend was closed")
        batch = np.asarray(batch)
        if len(batch) > self.max_batch:
            parts = [self.run(batch[i:i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
            return [np.concatenate(outs) for outs in zip(*parts)]
        buffers, cuda = self.buffers, self._cuda
        buffers.check_shape(batch.shape)
        if threading.get_ident() != self._thread:
            cuda.activate()
        buffers.upload(batch)
        if not self.context.execute_async_v3(cuda.stream):
            raise EngineError(f"TensorRT execution failed: {_first_line(self.logger.last_error())}")
        shapes = buffers.download()
        cuda.sync()
        return buffers.results(shapes)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for attr in ("buffers", "context", "engine", "runtime"):
            if hasattr(self, attr):  # set only as far as construction got
                setattr(self, attr, None)  # TensorRT objects go before the memory they use
        if self._cuda is not None:
            try:
                self._cuda.close()
            finally:
                self._cuda = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()
