"""What a test needs of the machine, as shared skip markers: each asks for the real condition, not a host name.

- ``cuda``: a CUDA GPU that PyTorch can use (the driver sees one, and torch was built with CUDA for it).
- ``tensorrt``: TensorRT or TensorRT-RTX importable *and* able to make a builder here (what building engines,
  the cache and the store need; no GPU is needed for TensorRT-RTX builds).
- ``tensorrt_gpu``: a GPU the installed TensorRT can run engines on (TensorRT-RTX refuses Hopper: docs/gpu.md).
- ``no_cuda_gpu``: for tests of what happens where there is no CUDA GPU at all (the CPU fallback).

The driver is asked first (``cuda_gpus``, through ctypes), so a machine without a GPU never imports torch or
TensorRT to find that out.
"""

from __future__ import annotations

import functools

import pytest

from engines.backends.cuda_probe import cuda_gpus


@functools.cache
def torch_cuda() -> bool:
    if not cuda_gpus():
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@functools.cache
def tensorrt_why_not() -> str | None:
    """None when TensorRT can build here, else why not (one line)."""
    from engines.errors import BackendUnavailable
    from engines.tensorrt.api import load_trt, make_logger

    try:
        api = load_trt()
    except BackendUnavailable as exc:
        return str(exc)
    try:
        builder = api.module.Builder(make_logger(api))
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything
        return f"{api.tag} is installed but cannot make a builder ({exc})"
    return None if builder is not None else f"{api.tag} is installed but cannot make a builder"


@functools.cache
def tensorrt_gpu_why_not() -> str | None:
    """None when an engine can execute here, else why not."""
    why = tensorrt_why_not()
    if why:
        return why
    if not cuda_gpus():
        return "no CUDA GPU"
    from engines.tensorrt.api import gpu_compute_capability, load_trt, rtx_can_run

    cc = gpu_compute_capability(0)
    if load_trt().is_rtx and not (cc and rtx_can_run(cc)):
        return f"TensorRT-RTX does not run engines on compute capability {cc}"
    return None


cuda = pytest.mark.skipif(not torch_cuda(), reason="needs a CUDA GPU that PyTorch can use")
tensorrt = pytest.mark.skipif(tensorrt_why_not() is not None, reason=f"needs TensorRT: {tensorrt_why_not()}")
tensorrt_gpu = pytest.mark.skipif(tensorrt_gpu_why_not() is not None,
                                  reason=f"needs a GPU TensorRT runs engines on: {tensorrt_gpu_why_not()}")
no_cuda_gpu = pytest.mark.skipif(cuda_gpus() > 0, reason="checks the CPU fallback, and a CUDA GPU is here")
