"""A fake CUDA runtime and a fake TensorRT, enough to drive the TensorRT backend's binding and buffer layer.

No TensorRT engine can execute on the machines this project reaches (docs/gpu.md), so these stand in for
``cuda.bindings.runtime`` and ``tensorrt``: "device" memory is host memory the fake hands out, and the fake
engine computes known outputs from its input by reading and writing the addresses it was given. A mix-up of
copy direction, address, size, stream or thread shows up as a wrong number or a refused call.
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from engines.tensorrt.api import TrtApi
from engines.tensorrt.cache import META_FORMAT, meta_path


class CudaError(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidValue = 1
    cudaErrorInsufficientDriver = 35


class DeviceAttr(enum.IntEnum):
    cudaDevAttrComputeCapabilityMajor = 75
    cudaDevAttrComputeCapabilityMinor = 76


class MemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class FakeStream(int):
    """cuda-python streams convert with int(); so does this."""


class FakeCudart:
    """The calls of ``cuda.bindings.runtime`` that CudaRuntime makes, each returning ``(err, *values)``."""

    cudaError_t = CudaError
    cudaDeviceAttr = DeviceAttr
    cudaMemcpyKind = MemcpyKind

    def __init__(self, devices: int = 1, cc: tuple[int, int] = (8, 6), name: bytes = b"Fake RTX 4090",
                 fail: dict[str, CudaError] | None = None) -> None:
        self.devices, self.cc, self.name = devices, cc, name
        self.fail = dict(fail or {})
        self.device_mem: dict[int, ctypes.Array] = {}
        self.host_mem: dict[int, ctypes.Array] = {}
        self.streams: set[int] = set()
        self.current: dict[int, int] = {}  # thread id -> device set there
        self.copies: list[tuple[MemcpyKind, int, int]] = []  # (kind, bytes, stream)
        self.syncs = 0
        self._next_stream = 100

    def _err(self, name: str) -> CudaError:
        return self.fail.get(name, CudaError.cudaSuccess)

    @staticmethod
    def _inside(memory: dict[int, ctypes.Array], ptr: int, nbytes: int) -> bool:
        return any(start <= ptr and ptr + nbytes <= start + len(buf) for start, buf in memory.items())

    def cudaGetErrorName(self, err):
        return CudaError.cudaSuccess, CudaError(err).name.encode()

    def cudaGetDeviceCount(self):
        return self._err("cudaGetDeviceCount"), self.devices

    def cudaSetDevice(self, index: int):
        if index >= self.devices:
            return (CudaError.cudaErrorInvalidValue,)
        self.current[threading.get_ident()] = index
        return (self._err("cudaSetDevice"),)

    def cudaDeviceGetAttribute(self, attr: DeviceAttr, index: int):
        return CudaError.cudaSuccess, self.cc[0] if attr == DeviceAttr.cudaDevAttrComputeCapabilityMajor else self.cc[1]

    def cudaGetDeviceProperties(self, index: int):
        return CudaError.cudaSuccess, SimpleNamespace(name=self.name + b"\0" * (256 - len(self.name)))

    def cudaStreamCreate(self):
        self._next_stream += 1
        self.streams.add(self._next_stream)
        return self._err("cudaStreamCreate"), FakeStream(self._next_stream)

    def cudaStreamDestroy(self, stream):
        self.streams.remove(int(stream))
        return (CudaError.cudaSuccess,)

    def _alloc(self, memory: dict, nbytes: int, what: str):
        if self._err(what) != CudaError.cudaSuccess:
            return self._err(what), None
        buf = (ctypes.c_byte * nbytes)()
        memory[ctypes.addressof(buf)] = buf
        return CudaError.cudaSuccess, ctypes.addressof(buf)

    def cudaMalloc(self, nbytes: int):
        return self._alloc(self.device_mem, nbytes, "cudaMalloc")

    def cudaMallocHost(self, nbytes: int):
        return self._alloc(self.host_mem, nbytes, "cudaMallocHost")

    def cudaFree(self, ptr: int):
        del self.device_mem[int(ptr)]
        return (CudaError.cudaSuccess,)

    def cudaFreeHost(self, ptr: int):
        del self.host_mem[int(ptr)]
        return (CudaError.cudaSuccess,)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: MemcpyKind, stream):
        to, frm = (self.device_mem, self.host_mem) if kind == MemcpyKind.cudaMemcpyHostToDevice else (
            self.host_mem, self.device_mem)
        if int(stream) not in self.streams or not (self._inside(to, dst, nbytes) and self._inside(frm, src, nbytes)):
            return (CudaError.cudaErrorInvalidValue,)
        ctypes.memmove(dst, src, nbytes)
        self.copies.append((kind, nbytes, int(stream)))
        return (CudaError.cudaSuccess,)

    def cudaStreamSynchronize(self, stream):
        self.syncs += 1
        return (CudaError.cudaSuccess if int(stream) in self.streams else CudaError.cudaErrorInvalidValue,)

    def allocations(self) -> int:
        return len(self.device_mem) + len(self.host_mem)


# -- TensorRT ------------------------------------------------------------------------------------------------
class IOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class Validity(enum.Enum):
    VALID = 0
    INVALID = 2


class FakeILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3

    def __init__(self) -> None:
        pass


#: the fake engine: input (N, 3, 4, 4) float32 for N in 1..MAX_BATCH; outputs emb = 2 * the first 8 values of
#: each item, score = each item's sum (engine order emb, score; the ONNX order in the JSON is score, emb)
MIN_BATCH, MAX_BATCH, ITEM = 1, 4, (3, 4, 4)


def expected_outputs(batch: np.ndarray) -> list[np.ndarray]:
    flat = batch.reshape(len(batch), -1).astype(np.float32)
    return [flat.sum(1, keepdims=True), flat[:, :8] * 2]


class FakeContext:
    def __init__(self, cudart: FakeCudart, device: int) -> None:
        self.cudart, self.device = cudart, device
        self.shape: tuple[int, ...] | None = None
        self.addresses: dict[str, int] = {}
        self.launches: list[int] = []

    def set_input_shape(self, name: str, shape) -> bool:
        shape = tuple(shape)
        if name != "input" or shape[1:] != ITEM or not MIN_BATCH <= shape[0] <= MAX_BATCH:
            return False
        self.shape = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        n = self.shape[0]
        return {"input": self.shape, "emb": (n, 8), "score": (n, 1)}[name]

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def _array(self, name: str) -> np.ndarray:
        count = int(np.prod(self.get_tensor_shape(name)))
        return np.frombuffer((ctypes.c_float * count).from_address(self.addresses[name]), np.float32).reshape(
            self.get_tensor_shape(name))

    def execute_async_v3(self, stream: int) -> bool:
        """Runs only on the stream it was given an existing handle of, with the device current in this thread."""
        if stream not in self.cudart.streams or self.cudart.current.get(threading.get_ident()) != self.device:
            return False
        for name, value in zip(("score", "emb"), expected_outputs(self._array("input").copy())):
            self._array(name)[...] = value
        self.launches.append(stream)
        return True


class FakeEngine:
    num_io_tensors = 3
    _names = ("input", "emb", "score")

    def __init__(self, cudart: FakeCudart, device: int) -> None:
        self.contexts: list[FakeContext] = []
        self.cudart, self.device = cudart, device

    def get_tensor_name(self, i: int) -> str:
        return self._names[i]

    def get_tensor_mode(self, name: str) -> IOMode:
        return IOMode.INPUT if name == "input" else IOMode.OUTPUT

    def get_tensor_dtype(self, name: str):
        return np.float32

    def get_tensor_profile_shape(self, name: str, profile: int):
        return (MIN_BATCH, *ITEM), (2, *ITEM), (MAX_BATCH, *ITEM)

    def create_execution_context(self) -> FakeContext:
        self.contexts.append(FakeContext(self.cudart, self.device))
        return self.contexts[-1]


class FakeRuntime:
    def __init__(self, trt: FakeTrt, logger) -> None:
        self.trt = trt

    def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
        if data != ENGINE_BYTES:
            return None
        self.trt.engines.append(FakeEngine(self.trt.cudart, self.trt.device))
        return self.trt.engines[-1]


class FakeTrt:
    """The module object: what the backend, the buffers and ``make_logger`` use of ``tensorrt``."""

    TensorIOMode = IOMode
    EngineValidity = Validity
    ILogger = FakeILogger

    def __init__(self, cudart: FakeCudart, device: int = 0) -> None:
        self.cudart, self.device = cudart, device
        self.engines: list[FakeEngine] = []

    @staticmethod
    def nptype(dtype):
        return dtype

    def Runtime(self, logger) -> FakeRuntime:  # noqa: N802 - TensorRT's name
        return FakeRuntime(self, logger)


ENGINE_BYTES = b"fake engine bytes"


def write_engine(folder: Path, sm: str = "86", flavour: str = "trt") -> Path:
    """A fake engine file with the JSON the cache writes beside a real one."""
    path = folder / f"fake-fp16-sm{sm}-{flavour}10.0.engine"
    path.write_bytes(ENGINE_BYTES)
    meta = {"format": META_FORMAT, "model": "fake", "precision": "fp16", "sm": sm, "flavour": flavour,
            "engine_bytes": len(ENGINE_BYTES), "engine_sha256": hashlib.sha256(ENGINE_BYTES).hexdigest(),
            "outputs": ["score", "emb"]}
    meta_path(path).write_text(json.dumps(meta))
    return path


def fake_api(cudart: FakeCudart, flavour: str = "trt", device: int = 0) -> TrtApi:
    return TrtApi(FakeTrt(cudart, device), flavour, "10.0")  # type: ignore[arg-type]
