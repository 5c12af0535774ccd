"""What a test needs of the machine, as shared markers: each asks for the real condition, not a host name.

Mark a test ``@needs.cuda`` (etc.); ``tests/conftest.py`` skips it with a reason naming what is missing.
Conditions are asked only when a marked test is collected, and once per session.

- ``cuda``: a CUDA GPU that PyTorch can use (the driver sees one, and torch was built with CUDA for it).
- ``cuda_python``: a CUDA GPU and cuda-python (the TensorRT backend's CUDA binding), no TensorRT needed.
- ``tensorrt``: TensorRT or TensorRT-RTX importable *and* able to make a builder here (what building engines,
  the cache and the store need; no GPU is needed for TensorRT-RTX builds).
- ``tensorrt_gpu``: a GPU the installed TensorRT can run engines on (TensorRT-RTX refuses Hopper: docs/gpu.md).
- ``no_tensorrt_gpu``: for tests of TensorRT's refusal where no engine can execute (every machine we reach).
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


def _why_not_cuda() -> str | None:
    return None if torch_cuda() else "needs a CUDA GPU that PyTorch can use"


def _why_not_cuda_python() -> str | None:
    if not cuda_gpus():
        return "needs a CUDA GPU"
    try:
        import cuda.bindings.runtime  # noqa: F401
    except ImportError as exc:
        return f"needs cuda-python ({exc})"
    return None


def _why_not_tensorrt() -> str | None:
    why = tensorrt_why_not()
    return f"needs TensorRT: {why}" if why else None


def _why_not_tensorrt_gpu() -> str | None:
    why = tensorrt_gpu_why_not()
    return f"needs a GPU TensorRT runs engines on: {why}" if why else None


def _why_not_no_engine_gpu() -> str | None:
    return None if tensorrt_gpu_why_not() else "an engine can execute here: checks a refusal that does not happen"


def _why_not_no_cuda_gpu() -> str | None:
    return "checks the CPU fallback, and a CUDA GPU is here" if cuda_gpus() else None


#: marker argument -> why a test with it cannot run here (None: it can); asked only for marked tests
CONDITIONS = {
    "cuda": _why_not_cuda, "cuda_python": _why_not_cuda_python, "tensorrt": _why_not_tensorrt,
    "tensorrt_gpu": _why_not_tensorrt_gpu, "no_tensorrt_gpu": _why_not_no_engine_gpu,
    "no_cuda_gpu": _why_not_no_cuda_gpu,
}

cuda = pytest.mark.needs("cuda")
cuda_python = pytest.mark.needs("cuda_python")
tensorrt = pytest.mark.needs("tensorrt")
tensorrt_gpu = pytest.mark.needs("tensorrt_gpu")
#: a GPU TensorRT can run engines on must be *absent* (tests of the refusal on every other machine)
no_tensorrt_gpu = pytest.mark.needs("no_tensorrt_gpu")
no_cuda_gpu = pytest.mark.needs("no_cuda_gpu")


def why_skip(item: pytest.Item) -> str | None:
    """Why a collected test cannot run here (its first unmet ``needs``), or None."""
    for mark in item.iter_markers("needs"):
        (what,) = mark.args
        if what not in CONDITIONS:
            raise ValueError(f"unknown need {what!r}: use one of {', '.join(CONDITIONS)}")
        reason = CONDITIONS[what]()
        if reason:
            return reason
    return None
