"""May this engine run on this GPU with this TensorRT? Every refusal is one line naming the fix.

Checked before an engine is deserialised (its JSON against the GPU and the TensorRT flavour; TensorRT-RTX
against the GPU's compute capability) and by TensorRT itself where it can say so (``get_engine_validity``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.errors import BackendUnavailable

#: bits of TensorRT's engine-validity diagnostics -> what they mean
VALIDITY_BITS = {
    1: "built by another TensorRT version", 2: "built for another GPU architecture",
    4: "the CUDA driver is too old", 8: "the CUDA runtime is too old", 16: "not enough GPU memory",
    32: "the engine file is malformed", 64: "a CUDA error occurred",
}


def rtx_refusal(gpu_name: str, cc: str) -> str:
    """Why TensorRT-RTX will not run on a GPU of compute capability ``cc`` ("90")."""
    return (f"TensorRT-RTX engines do not run on {gpu_name or 'this GPU'} (compute capability "
            f"{cc[:-1]}.{cc[-1]}): they need 8.0, 8.6, 8.9 or 12.x; install full TensorRT or "
            "use the pytorch backend")


def check_gpu(api: Any, gpu_name: str, cc: str) -> None:
    """Refuse a GPU the installed TensorRT cannot run engines on (before building or loading anything)."""
    from engines.tensorrt.api import rtx_can_run

    if api.is_rtx and not rtx_can_run(cc):
        raise BackendUnavailable(rtx_refusal(gpu_name, cc))


def check_meta(meta: dict, api: Any, cc: str, engine_path: Path) -> None:
    """Refuse an engine whose JSON says it was built by another TensorRT flavour or for another GPU."""
    if meta.get("flavour") != api.flavour:
        raise BackendUnavailable(f"engine {engine_path.name} was built by {meta.get('flavour')}, "
                                 f"this process has {api.flavour}: rebuild it")
    if meta.get("sm") not in ("ANY", cc):
        raise BackendUnavailable(f"engine {engine_path.name} is for sm{meta.get('sm')}, this GPU is sm{cc}: "
                                 "run `facestream build-engines` on this machine")


def check_validity(trt: Any, runtime: Any, data: bytes, last_error: str, engine_path: Path) -> None:
    """TensorRT's own verdict on the engine bytes, where this TensorRT version can give one."""
    probe = getattr(runtime, "get_engine_validity", None)  # TensorRT 10.x added it: an external API's version
    if probe is None:
        return
    validity, diagnostics = probe(data)
    if validity == trt.EngineValidity.INVALID:
        why = [text for bit, text in VALIDITY_BITS.items() if int(diagnostics) & bit] or [last_error]
        raise BackendUnavailable(f"TensorRT refuses engine {engine_path.name}: {', '.join(why)}")
