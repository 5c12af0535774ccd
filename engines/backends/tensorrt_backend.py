"""TensorRT backend: a serialised engine run with ``execute_async_v3`` on one CUDA stream.

Everything device-side is created in the process that runs the model, when the backend is
constructed: the CUDA context (the device's primary context, retained explicitly — never
``pycuda.autoinit``), the stream, and pinned host + device buffers sized once from the engine
profile's largest shapes. A call copies the batch into the pinned input buffer, sets the input
shape, launches, copies the outputs back and waits: no allocation on the device or in pinned
memory per call. Importing this module needs neither TensorRT nor a CUDA package nor a GPU;
anything missing is a ``BackendUnavailable`` with a one-line reason at construction, so the
registry can fall back to the next backend.

CUDA comes from pycuda if installed, else from cuda-python (``cuda.bindings``).

Not executed in this project's CI or on the lent GPUs: TensorRT-RTX (the TensorRT we can
install) runs engines on compute capability 8.0/8.6/8.9/12.x only, and the lent GPUs are
Hopper (9.0). The CUDA buffer layer was exercised on an H100 with cuda-python; engine execution
was not. See docs/gpu.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from pathlib import Path

import numpy as np

from engines.backends.base import Backend
from engines.errors import BackendUnavailable, EngineError, NoCudaGpu


class _CudaBase:
    """The few CUDA driver calls the backend needs, over pycuda or cuda-python."""

    kind = ""
    cc = ""  # compute capability, "86"
    gpu_name = ""

    def allocations(self) -> int:
        return len(self._device) + len(self._host)

    def close(self) -> None:
        """Free every buffer, the stream, and release the context (idempotent)."""
        if getattr(self, "_released", False):
            return
        self._released = True
        self._release()


class _PyCuda(_CudaBase):
    kind = "pycuda"

    def __init__(self, index: int) -> None:
        import pycuda.driver as cuda  # imported here: never at module import, never autoinit

        self.cuda = cuda
        cuda.init()
        if index >= cuda.Device.count():
            raise BackendUnavailable(f"no CUDA device {index} (pycuda sees {cuda.Device.count()})")
        self.dev = cuda.Device(index)
        self.ctx = self.dev.retain_primary_context()
        self.ctx.push()
        major, minor = self.dev.compute_capability()
        self.cc, self.gpu_name = f"{major}{minor}", self.dev.name()
        self.stream_obj = cuda.Stream()
        self.stream = self.stream_obj.handle
        self._device: list = []
        self._host: list = []

    def device_alloc(self, nbytes: int) -> int:
        mem = self.cuda.mem_alloc(max(nbytes, 1))
        self._device.append(mem)
        return int(mem)

    def host_alloc(self, count: int, dtype) -> np.ndarray:
        arr = self.cuda.pagelocked_empty(max(count, 1), dtype)
        self._host.append(arr)
        return arr

    def htod(self, dst: int, src: np.ndarray, nbytes: int) -> None:
        self.cuda.memcpy_htod_async(dst, src[: nbytes // src.itemsize], self.stream_obj)

    def dtoh(self, dst: np.ndarray, src: int, nbytes: int) -> None:
        self.cuda.memcpy_dtoh_async(dst[: nbytes // dst.itemsize], src, self.stream_obj)

    def sync(self) -> None:
        self.stream_obj.synchronize()

    def push(self) -> None:
        self.ctx.push()

    def pop(self) -> None:
        self.cuda.Context.pop()

    def _release(self) -> None:
        for mem in self._device:
            mem.free()
        self._device.clear()
        self._host.clear()  # pagelocked arrays free their memory when collected
        self.stream_obj = None
        try:
            self.cuda.Context.pop()
        finally:
            self.ctx.detach()


class _CudaPython(_CudaBase):
    kind = "cuda-python"

    def __init__(self, index: int) -> None:
        from cuda.bindings import driver as cu

        self.cu = cu
        self._check(cu.cuInit(0), "cuInit")
        count = self._check(cu.cuDeviceGetCount(), "cuDeviceGetCount")
        if index >= count:
            raise BackendUnavailable(f"no CUDA device {index} (the driver sees {count})")
        self.dev = self._check(cu.cuDeviceGet(index), "cuDeviceGet")
        self.ctx = self._check(cu.cuDevicePrimaryCtxRetain(self.dev), "cuDevicePrimaryCtxRetain")
        self._check(cu.cuCtxPushCurrent(self.ctx), "cuCtxPushCurrent")
        attr = cu.CUdevice_attribute
        major = self._check(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.dev), "cc")
        minor = self._check(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.dev), "cc")
        self.cc = f"{major}{minor}"
        name = self._check(cu.cuDeviceGetName(256, self.dev), "cuDeviceGetName")
        self.gpu_name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
        self.stream_obj = self._check(cu.cuStreamCreate(0), "cuStreamCreate")
        self.stream = int(self.stream_obj)
        self._device: list = []
        self._host: list[int] = []

    def _check(self, result, what: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.cu.CUresult.CUDA_SUCCESS:
            name = self.cu.cuGetErrorName(err)[1]
            text = name.decode() if isinstance(name, bytes) else str(err)
            raise BackendUnavailable(f"CUDA {what} failed ({text})")
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    def device_alloc(self, nbytes: int) -> int:
        ptr = self._check(self.cu.cuMemAlloc(max(nbytes, 1)), "cuMemAlloc")
        self._device.append(ptr)
        return int(ptr)

    def host_alloc(self, count: int, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(count, 1) * dtype.itemsize
        ptr = self._check(self.cu.cuMemHostAlloc(nbytes, 0), "cuMemHostAlloc")
        self._host.append(ptr)
        raw = (ctypes.c_byte * nbytes).from_address(int(ptr))
        return np.frombuffer(raw, dtype=dtype, count=max(count, 1))

    def htod(self, dst: int, src: np.ndarray, nbytes: int) -> None:
        self._check(self.cu.cuMemcpyHtoDAsync(dst, src.ctypes.data, nbytes, self.stream_obj), "cuMemcpyHtoDAsync")

    def dtoh(self, dst: np.ndarray, src: int, nbytes: int) -> None:
        self._check(self.cu.cuMemcpyDtoHAsync(dst.ctypes.data, src, nbytes, self.stream_obj), "cuMemcpyDtoHAsync")

    def sync(self) -> None:
        self._check(self.cu.cuStreamSynchronize(self.stream_obj), "cuStreamSynchronize")

    def push(self) -> None:
        self._check(self.cu.cuCtxPushCurrent(self.ctx), "cuCtxPushCurrent")

    def pop(self) -> None:
        self._check(self.cu.cuCtxPopCurrent(), "cuCtxPopCurrent")

    def _release(self) -> None:
        cu = self.cu
        for ptr in self._device:
            cu.cuMemFree(ptr)
        for ptr in self._host:
            cu.cuMemFreeHost(ptr)
        self._device.clear()
        self._host.clear()
        if self.stream_obj is not None:
            cu.cuStreamDestroy(self.stream_obj)
            self.stream_obj = None
        cu.cuCtxPopCurrent()
        cu.cuDevicePrimaryCtxRelease(self.dev)


def open_cuda(index: int = 0) -> _CudaBase:
    """A CUDA context on device ``index`` in this process, or BackendUnavailable saying why not."""
    errors = []
    for cls, module in ((_PyCuda, "pycuda.driver"), (_CudaPython, "cuda.bindings.driver")):
        try:
            __import__(module)
        except ImportError as exc:
            errors.append(f"{module.split('.')[0]}: {exc}")
            continue
        try:
            return cls(index)
        except BackendUnavailable:
            raise
        except Exception as exc:  # pycuda.driver.Error / RuntimeError: no driver, no device
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BackendUnavailable(f"no usable CUDA GPU ({cls.kind}: {text})") from exc
    raise BackendUnavailable(
        "the TensorRT backend needs pycuda or cuda-python for CUDA memory (" + "; ".join(errors)
        + "): pip install pycuda (or cuda-python)"
    )


def _device_index(device: str) -> int:
    if device in ("auto", "cuda"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    if device == "cpu":
        raise NoCudaGpu("TensorRT runs on an NVIDIA GPU only, and device cpu was asked for")
    raise BackendUnavailable(f"device {device!r} is not cuda, cuda:N or auto")


def _rtx_refusal(cuda: _CudaBase) -> str:
    return (f"TensorRT-RTX engines do not run on {cuda.gpu_name or 'this GPU'} (compute capability "
            f"{cuda.cc[:-1]}.{cuda.cc[-1]}): they need 8.0, 8.6, 8.9 or 12.x; install full TensorRT or "
            "use the pytorch backend")


_VALIDITY_BITS = {
    1: "built by another TensorRT version", 2: "built for another GPU architecture",
    4: "the CUDA driver is too old", 8: "the CUDA runtime is too old", 16: "not enough GPU memory",
    32: "the engine file is malformed", 64: "a CUDA error occurred",
}


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(
        self,
        engine_path: str | Path,
        device: str = "cuda:0",
        expected: dict | None = None,
        api=None,
        cuda: _CudaBase | None = None,
    ) -> None:
        """Load ``engine_path`` (refused unless its JSON agrees with ``expected`` and its bytes)."""
        from engines.tensorrt.api import load_trt, make_logger, rtx_can_run
        from engines.tensorrt.cache import load_engine_bytes

        self._cuda: _CudaBase | None = None
        self._closed = False
        api = api or load_trt()
        index = _device_index(device)
        self._cuda = cuda or open_cuda(index)
        self._thread = threading.get_ident()
        try:
            self._setup(api, Path(engine_path), expected, make_logger, load_engine_bytes, rtx_can_run, index)
        except BaseException:
            self.close()
            raise

    def _setup(self, api, engine_path, expected, make_logger, load_engine_bytes, rtx_can_run, index) -> None:
        cuda = self._cuda
        if api.is_rtx and not rtx_can_run(cuda.cc):
            raise BackendUnavailable(_rtx_refusal(cuda))
        try:
            data, meta = load_engine_bytes(engine_path, expected)
        except EngineError as exc:
            raise BackendUnavailable(str(exc)) from exc
        if meta.get("flavour") != api.flavour:
            raise BackendUnavailable(f"engine {engine_path.name} was built by {meta.get('flavour')}, "
                                     f"this process has {api.flavour}: rebuild it")
        if meta.get("sm") not in ("ANY", cuda.cc):
            raise BackendUnavailable(f"engine {engine_path.name} is for sm{meta.get('sm')}, this GPU is sm{cuda.cc}: "
                                     "run `facestream build-engines` on this machine")
        trt = api.module
        self.logger = make_logger(api)
        self.runtime = trt.Runtime(self.logger)
        if hasattr(self.runtime, "get_engine_validity"):
            validity, diagnostics = self.runtime.get_engine_validity(data)
            if validity == trt.EngineValidity.INVALID:
                why = [text for bit, text in _VALIDITY_BITS.items() if int(diagnostics) & bit] or [
                    self.logger.last_error().splitlines()[0]]
                raise BackendUnavailable(f"TensorRT refuses engine {engine_path.name}: {', '.join(why)}")
        self.engine = self.runtime.deserialize_cuda_engine(data)
        del data
        if self.engine is None:
            raise BackendUnavailable(
                f"TensorRT cannot load engine {engine_path.name} ({self.logger.last_error().splitlines()[0]}): "
                "rebuild it with `facestream build-engines`")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendUnavailable(f"TensorRT cannot create an execution context for {engine_path.name} "
                                     f"({self.logger.last_error().splitlines()[0]})")
        self.meta = meta
        self.engine_path = engine_path
        self.device = f"cuda:{index}"
        self.precision = meta.get("precision", "fp32")
        self._allocate(trt, meta)

    def _allocate(self, trt, meta: dict) -> None:
        engine, context, cuda = self.engine, self.context, self._cuda
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        order = [n for n in meta.get("outputs", []) if n in outputs]
        self.outputs = order if len(order) == len(outputs) else outputs
        if len(inputs) != 1:
            raise BackendUnavailable(f"engine {self.engine_path.name} has {len(inputs)} inputs; the backend runs one")
        self.input = inputs[0]
        lo, _, hi = (tuple(d) for d in engine.get_tensor_profile_shape(self.input, 0))
        self.min_shape, self.max_shape = lo, hi
        self.max_batch = hi[0]
        # Size every buffer once, for the largest input the profile allows.
        if not context.set_input_shape(self.input, hi):
            raise BackendUnavailable(f"engine {self.engine_path.name} rejects its own max shape {hi}")
        self._host: dict[str, np.ndarray] = {}
        self._dev: dict[str, int] = {}
        for name in [self.input, *self.outputs]:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendUnavailable(f"engine output {name} has a data-dependent shape {shape}: not supported")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            count = int(np.prod(shape))
            self._host[name] = cuda.host_alloc(count, dtype)
            self._dev[name] = cuda.device_alloc(count * dtype.itemsize)
            if not context.set_tensor_address(name, self._dev[name]):
                raise BackendUnavailable(f"TensorRT refused the buffer address of {name}")

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        ok = len(shape) == len(self.max_shape) and all(
            lo <= s <= hi for lo, s, hi in zip(self.min_shape, shape, self.max_shape))
        if not ok:
            raise EngineError(
                f"engine {self.engine_path.name} takes {'x'.join(map(str, self.min_shape))} to "
                f"{'x'.join(map(str, self.max_shape))}, got a batch of {'x'.join(map(str, shape))}: rebuild it with "
                "a matching profile (`facestream build-engines --max-batch/--det-size`)")

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._closed:
            raise EngineError("the TensorRT backend was closed")
        batch = np.asarray(batch)
        if len(batch) > self.max_batch:
            parts = [self.run(batch[i:i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
            return [np.concatenate(outs) for outs in zip(*parts)]
        self._check_shape(batch.shape)
        cuda, context = self._cuda, self.context
        other_thread = threading.get_ident() != self._thread
        if other_thread:
            cuda.push()
        try:
            host_in = self._host[self.input]
            count = batch.size
            np.copyto(host_in[:count].reshape(batch.shape), batch, casting="same_kind")
            cuda.htod(self._dev[self.input], host_in, count * host_in.itemsize)
            if not context.set_input_shape(self.input, batch.shape):
                raise EngineError(f"TensorRT rejected input shape {batch.shape}")
            if not context.execute_async_v3(cuda.stream):
                raise EngineError(f"TensorRT execution failed: {self.logger.last_error().splitlines()[0]}")
            shapes = []
            for name in self.outputs:
                shape = tuple(context.get_tensor_shape(name))
                host = self._host[name]
                cuda.dtoh(host, self._dev[name], int(np.prod(shape)) * host.itemsize)
                shapes.append(shape)
            cuda.sync()
            # Copies: the pinned buffers are overwritten by the next call.
            return [self._host[name][: int(np.prod(shape))].reshape(shape).astype(np.float32)
                    for name, shape in zip(self.outputs, shapes)]
        finally:
            if other_thread:
                cuda.pop()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for attr in ("context", "engine", "runtime"):
            if hasattr(self, attr):
                setattr(self, attr, None)  # TensorRT objects go before the context they live in
        if self._cuda is not None:
            try:
                self._cuda.close()
            finally:
                self._cuda = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()


def create(info, checkpoint_dir: Path, device: str = "auto", precision: str = "fp16", **opts) -> Backend:
    """Registry factory: the engine for ``info`` (built or refreshed if needed) on a CUDA GPU.

    Options: ``engine_dir`` (default checkpoints/engines), ``max_batch``, ``opt_batch``,
    ``det_size``, ``workspace_mb``, ``sm``, ``build`` (False: refuse instead of building),
    ``trt_flavour`` ("trt" / "trtrtx"), ``progress`` (callable taking BuildEvent).
    """
    from engines.backends.cuda_probe import cuda_gpus
    from engines.fetch import require
    from engines.tensorrt.api import load_trt, rtx_can_run
    from engines.tensorrt.cache import DEFAULT_DET_SIZE, default_profile, ensure_engine, sha256_file
    from engines.tensorrt.store import EngineStore

    index = _device_index(device)
    if not cuda_gpus():  # before TensorRT and the CUDA bindings: their absence is not the problem here
        raise NoCudaGpu("this machine has no CUDA GPU (TensorRT runs on NVIDIA GPUs only)")
    api = load_trt(opts.get("trt_flavour"))
    cuda = open_cuda(index)
    try:
        if api.is_rtx and not rtx_can_run(cuda.cc):  # before spending time on a build
            raise BackendUnavailable(_rtx_refusal(cuda))
        onnx_path = require(checkpoint_dir, info.onnx)
        engine_dir = Path(opts.get("engine_dir") or Path(checkpoint_dir) / "engines")
        profile = default_profile(onnx_path, info.task, max_batch=opts.get("max_batch"),
                                  opt_batch=opts.get("opt_batch"), det_size=opts.get("det_size") or DEFAULT_DET_SIZE)
        sm = opts.get("sm") or ("ANY" if api.is_rtx else cuda.cc)
        if opts.get("build", True):
            try:
                record = ensure_engine(onnx_path, info.name, precision, sm, profile, engine_dir, api=api,
                                       workspace_mb=opts.get("workspace_mb"), progress=opts.get("progress"),
                                       store=EngineStore.from_env())
            except EngineError as exc:
                raise BackendUnavailable(f"no TensorRT engine for {info.name}: {exc}") from exc
            path = record.path
        else:
            from engines.tensorrt.cache import engine_name

            path = engine_dir / engine_name(info.name, precision, sm, api.flavour, api.version)
        expected = {"model": info.name, "precision": precision, "sm": sm, "flavour": api.flavour,
                    "builder_version": api.version, "profile": profile.to_json(),
                    "onnx_sha256": record.onnx_sha256 if opts.get("build", True) else sha256_file(onnx_path)}
        return TensorRTBackend(path, f"cuda:{index}", expected=expected, api=api, cuda=cuda)
    except BaseException:
        cuda.close()
        raise
