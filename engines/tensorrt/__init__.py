"""TensorRT engines: FP16 conversion, building, the versioned engine cache and an optional S3 store.

Importing this package imports no TensorRT and nothing CUDA: ``tensorrt`` / ``tensorrt_rtx_bindings``
are loaded only when an engine is built or run (``engines.tensorrt.api.load_trt``).
"""

from engines.tensorrt.builder import BuildEvent, ShapeProfile, build_engine, profile_for
from engines.tensorrt.cache import EngineRecord, build_engines, engine_name, ensure_engine, load_engine_bytes

__all__ = [
    "BuildEvent",
    "EngineRecord",
    "ShapeProfile",
    "build_engine",
    "build_engines",
    "engine_name",
    "ensure_engine",
    "load_engine_bytes",
    "profile_for",
]
