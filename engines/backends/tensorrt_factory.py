"""The registry's TensorRT factory: find or build the engine for a model, then open it on a CUDA GPU.

Kept apart from the backend so the backend only runs engines; this module decides which engine (cache,
store, build) and refuses early — no GPU, a GPU TensorRT-RTX cannot run on — before spending time on a build.
"""

from __future__ import annotations

from pathlib import Path

from engines.backends.base import Backend
from engines.errors import BackendUnavailable, EngineError, NoCudaGpu


def create(info, checkpoint_dir: Path, device: str = "auto", precision: str = "fp16", **opts) -> Backend:
    """Registry factory: the engine for ``info`` (built or refreshed if needed) on a CUDA GPU.

    Options: ``engine_dir`` (default checkpoints/engines), ``max_batch``, ``opt_batch``,
    ``det_size``, ``workspace_mb``, ``sm``, ``build`` (False: refuse instead of building),
    ``trt_flavour`` ("trt" / "trtrtx"), ``progress`` (callable taking BuildEvent).
    """
    from engines.backends.cuda_probe import cuda_gpus
    from engines.backends.cuda_runtime import open_cuda
    from engines.backends.tensorrt_backend import TensorRTBackend, cuda_index
    from engines.fetch import require, sha256_file
    from engines.tensorrt.api import load_trt
    from engines.tensorrt.cache import DEFAULT_DET_SIZE, default_profile, engine_name, ensure_engine
    from engines.tensorrt.store import EngineStore
    from engines.tensorrt.validate import check_gpu

    index = cuda_index(device)
    if not cuda_gpus():  # before TensorRT and cuda-python: their absence is not the problem here
        raise NoCudaGpu("this machine has no CUDA GPU (TensorRT runs on NVIDIA GPUs only)")
    api = load_trt(opts.get("trt_flavour"))
    cuda = open_cuda(index)
    try:
        check_gpu(api, cuda.gpu_name, cuda.cc)  # before spending time on a build
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
            path, onnx_sha256 = record.path, record.onnx_sha256
        else:
            path = engine_dir / engine_name(info.name, precision, sm, api.flavour, api.version)
            onnx_sha256 = sha256_file(onnx_path)
        expected = {"model": info.name, "precision": precision, "sm": sm, "flavour": api.flavour,
                    "builder_version": api.version, "profile": profile.to_json(), "onnx_sha256": onnx_sha256}
        return TensorRTBackend(path, f"cuda:{index}", expected=expected, api=api, cuda=cuda)
    except BaseException:
        cuda.close()
        raise
