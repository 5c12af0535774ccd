"""The one CUDA binding behind the TensorRT backend: cuda-python's runtime API (``cuda.bindings.runtime``).

As in NVIDIA's TensorRT samples (``common_runtime.py``): every call's error code is checked in one place, and
the object owns what it allocates — one stream, device buffers, pinned host buffers — and frees all of it in
``close``. The runtime API binds the device's primary context to a thread with ``cudaSetDevice``; a call from
another thread than the one that opened the device makes it current there first (``activate``).

Nothing is imported until a device is opened. Tests inject a fake ``cudart`` module object (the same calls,
host memory standing in for the device) to exercise this layer and the TensorRT buffers on a machine with no
GPU; it has not executed a TensorRT engine here or on the lent Hopper GPU (see docs/gpu.md).
"""

from __future__ import annotations

import ctypes
from types import ModuleType
from typing import Any

import numpy as np

from engines.errors import BackendUnavailable

INSTALL_HINT = "pip install cuda-python"


def import_cudart() -> ModuleType:
    """``cuda.bindings.runtime`` (cuda-python 12.6+), else the older ``cuda.cudart``; BackendUnavailable if neither."""
    errors = []
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return __import__(name, fromlist=["_"])
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise BackendUnavailable(
        f"the TensorRT backend needs cuda-python for CUDA memory ({'; '.join(errors)}): {INSTALL_HINT}")


class CudaRuntime:
    """One CUDA device in this process: its stream and the buffers allocated through this object."""

    def __init__(self, index: int = 0, cudart: ModuleType | None = None) -> None:
        self.cudart = cudart if cudart is not None else import_cudart()
        self.index = index
        self._device: list[int] = []
        self._host: list[int] = []
        self._stream: Any = None
        self._closed = False
        rt = self.cudart
        count = self.call(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if index >= count:
            raise BackendUnavailable(f"no CUDA device {index} (the CUDA runtime sees {count})")
        self.call(rt.cudaSetDevice(index), "cudaSetDevice")
        attr, what = rt.cudaDeviceAttr, "cudaDeviceGetAttribute"
        major = self.call(rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, index), what)
        minor = self.call(rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, index), what)
        #: compute capability as TensorRT engine names write it ("86")
        self.cc = f"{major}{minor}"
        props = self.call(rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        self.gpu_name = bytes(props.name).split(b"\0", 1)[0].decode(errors="replace")
        self._stream = self.call(rt.cudaStreamCreate(), "cudaStreamCreate")

    def call(self, result: Any, what: str) -> Any:
        """The value of a cuda-python call (``(err, *values)``), or BackendUnavailable naming the error."""
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.cudart.cudaError_t.cudaSuccess:
            name = self.cudart.cudaGetErrorName(err)[1]
            text = name.decode() if isinstance(name, bytes) else str(err)
            raise BackendUnavailable(f"CUDA {what} failed ({text})")
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    @property
    def stream(self) -> int:
        """The stream handle as an int, what ``execute_async_v3`` takes."""
        return int(self._stream)

    def device_alloc(self, nbytes: int) -> int:
        ptr = self.call(self.cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc")
        self._device.append(ptr)
        return int(ptr)

    def host_alloc(self, count: int, dtype: Any) -> np.ndarray:
        """A page-locked host array of ``count`` items (DMA to and from it needs no staging copy)."""
        dtype = np.dtype(dtype)
        nbytes = max(count, 1) * dtype.itemsize
        ptr = self.call(self.cudart.cudaMallocHost(nbytes), "cudaMallocHost")
        self._host.append(ptr)
        raw = (ctypes.c_byte * nbytes).from_address(int(ptr))
        return np.frombuffer(raw, dtype=dtype, count=max(count, 1))

    def htod(self, dst: int, src: np.ndarray, nbytes: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.call(self.cudart.cudaMemcpyAsync(dst, src.ctypes.data, nbytes, kind, self._stream), "cudaMemcpyAsync")

    def dtoh(self, dst: np.ndarray, src: int, nbytes: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.call(self.cudart.cudaMemcpyAsync(dst.ctypes.data, src, nbytes, kind, self._stream), "cudaMemcpyAsync")

    def sync(self) -> None:
        self.call(self.cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def activate(self) -> None:
        """Make this device current in the calling thread (a thread other than the opener's)."""
        self.call(self.cudart.cudaSetDevice(self.index), "cudaSetDevice")

    def close(self) -> None:
        """Free every buffer and the stream (idempotent; errors at teardown are not raised)."""
        if self._closed:
            return
        self._closed = True
        rt = self.cudart
        for ptr in self._device:
            rt.cudaFree(ptr)
        for ptr in self._host:
            rt.cudaFreeHost(ptr)
        self._device.clear()
        self._host.clear()
        if self._stream is not None:
            rt.cudaStreamDestroy(self._stream)
            self._stream = None


def open_cuda(index: int = 0, cudart: ModuleType | None = None) -> CudaRuntime:
    """A CudaRuntime on device ``index``, or BackendUnavailable with one line saying why not."""
    rt = cudart if cudart is not None else import_cudart()
    try:
        return CudaRuntime(index, rt)
    except BackendUnavailable:
        raise
    except Exception as exc:  # a broken install or driver: anything the binding raises becomes one line
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BackendUnavailable(f"no usable CUDA GPU (cuda-python: {text})") from exc
