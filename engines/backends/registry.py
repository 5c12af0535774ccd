"""Backend registry and the fallback chain tensorrt → pytorch → onnxruntime.

A backend that cannot run here raises BackendUnavailable; the registry then tries the next one
with a single warning line, unless strict GPU mode turns anything off the GPU into an error.
Where there is no CUDA GPU at all (NoCudaGpu), the next one is the CPU default, onnxruntime on the CPU:
PyTorch on a CPU is the slower of the two, and its GPU path cannot run there either.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from engines.device import parse_device
from engines.errors import BackendUnavailable, EngineError, NoCudaGpu

if TYPE_CHECKING:
    from engines.backends.base import Backend
    from engines.model_zoo import ModelInfo

log = logging.getLogger("facestream.engines")

FALLBACK_ORDER = ("tensorrt", "pytorch", "onnxruntime")
CPU_DEFAULT = "onnxruntime"
#: name -> "module:function"; the factory is imported only when asked for, so a missing
#: optional package (torch, tensorrt, cuda-python) costs nothing until that backend is chosen.
_FACTORIES: dict[str, str] = {
    "onnxruntime": "engines.backends.onnxruntime_backend:create",
    "pytorch": "engines.backends.pytorch_backend:create",
    "tensorrt": "engines.backends.tensorrt_factory:create",
}


def available_backends() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def register(name: str, target: str) -> None:
    """Add a backend factory ("module:function" taking (info, checkpoint_dir, device, precision, **opts))."""
    _FACTORIES[name] = target


def _factory(name: str) -> Callable[..., Backend]:
    module, func = _FACTORIES[name].split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name} is not installed ({exc})") from exc


def create_backend(
    info: ModelInfo,
    backend: str = "onnxruntime",
    checkpoint_dir: str | Path = "checkpoints",
    device: str = "auto",
    precision: str = "fp32",
    strict_gpu: bool = False,
    warn: Callable[[str], None] | None = None,
    **opts,
) -> Backend:
    """Create ``backend`` for ``info``, falling back along FALLBACK_ORDER with one warning line."""
    if backend not in _FACTORIES:
        raise EngineError(
            f"unknown backend {backend!r}: choose one of {', '.join(_FACTORIES)}"
        )
    warn = warn or log.warning
    chain = [backend] + [b for b in FALLBACK_ORDER[FALLBACK_ORDER.index(backend) + 1:]
                         if backend in FALLBACK_ORDER]
    if strict_gpu and parse_device(device).is_cpu:
        raise EngineError(f"STRICT_GPU=true but {info.name} was asked to run on the CPU: set the device to cuda")
    reasons: list[str] = []
    while chain:
        name = chain.pop(0)
        try:
            made = _factory(name)(info, Path(checkpoint_dir), device=device, precision=precision, **opts)
        except BackendUnavailable as exc:
            if strict_gpu:
                raise EngineError(f"STRICT_GPU=true and {info.name} cannot run on {name}: {exc}") from exc
            reasons.append(f"{name}: {exc}")
            if isinstance(exc, NoCudaGpu) and name != CPU_DEFAULT:
                chain, device = [CPU_DEFAULT], "cpu"
            continue
        if strict_gpu and not made.on_gpu:
            made.close()
            raise EngineError(
                f"STRICT_GPU=true but {info.name} would run on the CPU with {name} "
                "(no CUDA device seen): install the GPU build or unset STRICT_GPU"
            )
        if reasons:
            warn(f"{info.name}: {'; '.join(reasons)} — using {made.describe()} instead")
        return made
    raise EngineError(f"no backend can run {info.name}: {'; '.join(reasons)}")
