"""FP32 ONNX → FP16 ONNX, because a strongly typed TensorRT network takes its precision from the
ONNX tensor types (TensorRT-RTX has no FP16 builder flag: FP16 means an FP16 ONNX).

Decision: the converted model keeps **float32 inputs and outputs**; a Cast node at each boundary
does the conversion inside the engine, on the GPU. So every backend takes the same float32 NCHW
batch and returns float32 arrays, the host never converts, and the pinned buffers of the
TensorRT backend are the same for FP32 and FP16 engines. Weights become float16; ops that are
unsafe or pointless in half precision (Resize/Upsample, TopK, NMS, Range, CumSum, Min/Max — the
converter's block list) stay float32 behind Cast nodes.

The conversion itself is onnxconverter-common's (a small, widely used Microsoft package); this
module only pins the settings, writes atomically and says clearly when the package is missing.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from engines.errors import EngineError

#: smallest magnitude kept for a non-zero weight: float16's smallest subnormal is ~5.96e-8, and
#: weights below it would otherwise flush to zero silently
MIN_POSITIVE = 6e-8
#: larger weights are clamped here (float16 max is 65504)
MAX_FINITE = 65000.0


def _converter():
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise EngineError(
            f"FP16 engines need onnxconverter-common to convert the ONNX model ({exc}): "
            "pip install onnxconverter-common, or build with precision fp32"
        ) from exc
    return float16


def is_fp16_model(model) -> bool:
    """True if the model's weights are already float16 (a converted model, or an FP16 export)."""
    from onnx import TensorProto

    kinds = {init.data_type for init in model.graph.initializer}
    return TensorProto.FLOAT16 in kinds and TensorProto.FLOAT not in kinds


def convert_fp16(src: str | Path, dst: str | Path, keep_io_types: bool = True):
    """Write an FP16 copy of ``src`` to ``dst`` (atomically) and return the converted ModelProto.

    ``keep_io_types=True`` keeps float32 inputs/outputs with Cast nodes at the boundary (see the
    module docstring); an already-FP16 model is copied unchanged.
    """
    import onnx

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    if not is_fp16_model(model):
        float16 = _converter()
        with warnings.catch_warnings():
            # one warning per clamped weight: hundreds of lines that say nothing actionable
            warnings.simplefilter("ignore", UserWarning)
            try:
                model = float16.convert_float_to_float16(
                    model, min_positive_val=MIN_POSITIVE, max_finite_val=MAX_FINITE,
                    keep_io_types=keep_io_types,
                )
            except Exception as exc:
                raise EngineError(
                    f"{src.name} cannot be converted to FP16 ({str(exc).splitlines()[0] if str(exc) else exc!r}): "
                    "build it with precision fp32"
                ) from exc
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return model
