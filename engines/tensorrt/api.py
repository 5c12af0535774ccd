"""One handle on whichever TensorRT is installed: full TensorRT (``tensorrt``) or TensorRT for RTX
(``tensorrt_rtx_bindings``).

Both expose the same Python API (Builder, OnnxParser, Runtime, ``execute_async_v3``); they differ
in where their engines run (full TensorRT: the GPU that built it; TensorRT-RTX: Ampere, Ada and
Blackwell only, but it builds on a machine with no GPU at all) and in how precision is chosen
(TensorRT-RTX networks are strongly typed only). The flavour tag goes into engine file names so
an engine of one is never handed to the other.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

from engines.errors import BackendUnavailable

#: flavour -> module name
MODULES = {"trt": "tensorrt", "trtrtx": "tensorrt_rtx_bindings"}
#: set to "trt" or "trtrtx" to pick one when both are installed (full TensorRT wins otherwise)
FLAVOUR_ENV = "FACESTREAM_TRT"


@dataclass(frozen=True)
class TrtApi:
    module: ModuleType
    flavour: str  # "trt" | "trtrtx"
    version: str

    @property
    def tag(self) -> str:
        """``trt10.13.0.35`` / ``trtrtx1.7.1.116``: the builder part of an engine's file name."""
        return f"{self.flavour}{self.version}"

    @property
    def is_rtx(self) -> bool:
        return self.flavour == "trtrtx"


def _import(flavour: str) -> TrtApi:
    import importlib

    module = importlib.import_module(MODULES[flavour])
    return TrtApi(module, flavour, str(getattr(module, "__version__", "unknown")))


@lru_cache(maxsize=4)
def load_trt(flavour: str | None = None) -> TrtApi:
    """The TensorRT module to use, or BackendUnavailable naming what to install.

    ``flavour`` (or ``$FACESTREAM_TRT``) forces one; by default full TensorRT is preferred because
    its engines run on every NVIDIA GPU, TensorRT-RTX's only on compute capability 8.0/8.6/8.9/12.x.
    """
    flavour = flavour or os.environ.get(FLAVOUR_ENV) or None
    if flavour and flavour not in MODULES:
        raise BackendUnavailable(f"{FLAVOUR_ENV}={flavour!r} is not a TensorRT flavour: use trt or trtrtx")
    errors = []
    for name in [flavour] if flavour else list(MODULES):
        try:
            return _import(name)
        except ImportError as exc:  # an installed but broken wheel raises OSError-derived ImportError too
            errors.append(f"{MODULES[name]}: {exc}")
        except OSError as exc:
            errors.append(f"{MODULES[name]}: {exc}")
    raise BackendUnavailable(
        "TensorRT is not installed (" + "; ".join(errors) + "): pip install 'facestream[rtx]' "
        "(TensorRT for RTX) or install NVIDIA's tensorrt wheel"
    )


def make_logger(api: TrtApi, echo: bool = False):
    """A TensorRT logger that keeps warnings and errors so a failed build can say why in one line."""
    trt = api.module

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lock = threading.Lock()
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, severity, msg) -> None:  # called from TensorRT's threads
            with self.lock:
                if severity <= trt.ILogger.Severity.ERROR:
                    self.errors.append(msg)
                elif severity == trt.ILogger.Severity.WARNING:
                    self.warnings.append(msg)
            if echo and severity <= trt.ILogger.Severity.WARNING:
                print(f"[TensorRT] {msg}")

        def last_error(self) -> str:
            with self.lock:
                return self.errors[-1] if self.errors else "no error reported by TensorRT"

    return _Logger()


def gpu_compute_capability(index: int = 0) -> str | None:
    """Compute capability of GPU ``index`` as "86" / "90" / "120", or None when none is seen.

    Asks ``nvidia-smi`` first so the calling process creates no CUDA context (the CLI builds engines
    in the parent; workers own CUDA), then cuda-python's driver API.
    """
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=compute_cap", "--format=csv,noheader", f"--id={index}"],
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout.strip()
            major, minor = out.splitlines()[0].strip().split(".")
            return f"{int(major)}{int(minor)}"
        except (subprocess.SubprocessError, OSError, ValueError, IndexError):
            pass
    try:
        from cuda.bindings import driver as cu
    except ImportError:
        return None
    try:
        if cu.cuInit(0)[0] != cu.CUresult.CUDA_SUCCESS:
            return None
    except Exception:  # noqa: BLE001 - no driver library at all (cuda-python on a machine without a GPU)
        return None
    attrs = cu.CUdevice_attribute
    err, major = cu.cuDeviceGetAttribute(attrs.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, index)
    err2, minor = cu.cuDeviceGetAttribute(attrs.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, index)
    if err != cu.CUresult.CUDA_SUCCESS or err2 != cu.CUresult.CUDA_SUCCESS:
        return None
    return f"{major}{minor}"


#: compute capabilities TensorRT-RTX engines run on (a portable "ANY" engine covers all of them)
RTX_RUNS_ON = ("80", "86", "89", "120", "121")


def rtx_can_run(sm: str) -> bool:
    """True if TensorRT-RTX's runtime accepts a GPU of compute capability ``sm`` (Ampere and later,
    but not Hopper/sm90 nor Turing by default; 12.x and later are accepted)."""
    return sm in RTX_RUNS_ON or (sm.isdigit() and int(sm) >= 120)
