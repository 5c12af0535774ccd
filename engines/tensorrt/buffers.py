"""The I/O buffers of one TensorRT execution context, sized once for the largest input its profile allows.

One pinned host array and one device buffer per tensor, addresses handed to TensorRT once
(``set_tensor_address``): a call copies the batch in, launches, copies the outputs out, and allocates nothing.
The CUDA side is any object with CudaRuntime's calls (``host_alloc``, ``device_alloc``, ``htod``, ``dtoh``), so a
fake driver can stand in for it in tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import BackendUnavailable, EngineError


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


class EngineBuffers:
    """Host and device memory of every input and output of ``engine``, bound to ``context``."""

    def __init__(self, trt: Any, engine: Any, context: Any, cuda: Any, output_order: list[str],
                 engine_path: Path) -> None:
        self.cuda, self.context, self.engine_path = cuda, context, engine_path
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        order = [n for n in output_order if n in outputs]
        #: output tensor names in the model's ONNX order (what ``Backend.run`` promises)
        self.outputs = order if len(order) == len(outputs) else outputs
        if len(inputs) != 1:
            raise BackendUnavailable(f"engine {engine_path.name} has {len(inputs)} inputs; the backend runs one")
        self.input = inputs[0]
        lo, _, hi = (tuple(d) for d in engine.get_tensor_profile_shape(self.input, 0))
        self.min_shape, self.max_shape = lo, hi
        self.max_batch = hi[0]
        if not context.set_input_shape(self.input, hi):
            raise BackendUnavailable(f"engine {engine_path.name} rejects its own max shape {hi}")
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, int] = {}
        for name in [self.input, *self.outputs]:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendUnavailable(f"engine output {name} has a data-dependent shape {shape}: not supported")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            count = int(np.prod(shape))
            self.host[name] = cuda.host_alloc(count, dtype)
            self.device[name] = cuda.device_alloc(count * dtype.itemsize)
            if not context.set_tensor_address(name, self.device[name]):
                raise BackendUnavailable(f"TensorRT refused the buffer address of {name}")

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """EngineError unless ``shape`` lies within the engine's optimisation profile."""
        ok = len(shape) == len(self.max_shape) and all(
            lo <= s <= hi for lo, s, hi in zip(self.min_shape, shape, self.max_shape))
        if not ok:
            raise EngineError(
                f"engine {self.engine_path.name} takes {_dims(self.min_shape)} to {_dims(self.max_shape)}, got a "
                f"batch of {_dims(shape)}: rebuild it with a matching profile "
                "(`facestream build-engines --max-batch/--det-size`)")

    def upload(self, batch: np.ndarray) -> None:
        """Copy ``batch`` into the pinned input, then (asynchronously) to the device, and set the input shape."""
        host = self.host[self.input]
        np.copyto(host[:batch.size].reshape(batch.shape), batch, casting="same_kind")
        self.cuda.htod(self.device[self.input], host, batch.size * host.itemsize)
        if not self.context.set_input_shape(self.input, batch.shape):
            raise EngineError(f"TensorRT rejected input shape {batch.shape}")

    def download(self) -> list[tuple[int, ...]]:
        """Queue the copy of every output back to its pinned array; their shapes for this batch."""
        shapes = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            host = self.host[name]
            self.cuda.dtoh(host, self.device[name], int(np.prod(shape)) * host.itemsize)
            shapes.append(shape)
        return shapes

    def results(self, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
        """The outputs as float32 copies (the pinned arrays are overwritten by the next call); after a sync."""
        return [self.host[name][: int(np.prod(shape))].reshape(shape).astype(np.float32)
                for name, shape in zip(self.outputs, shapes)]
