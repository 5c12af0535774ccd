"""The TensorRT backend imports anywhere and, where it cannot run, says why in one line.

Engine execution itself is not tested: no GPU here, and TensorRT-RTX (the TensorRT we can install)
refuses the lent Hopper GPUs. What runs here: the import, every refusal path, the engine checks
before deserialisation, and the registry's fallback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engines.errors import BackendUnavailable
from engines.tensorrt.api import TrtApi, load_trt, rtx_can_run
from tests import needs

REPO = Path(__file__).resolve().parents[3]


class FakeCuda:
    """Stands in for the CUDA layer (injected through the constructor), to reach the checks after it."""

    kind = "fake"

    def __init__(self, cc: str, name: str = "Test GPU") -> None:
        self.cc, self.gpu_name, self.closed = cc, name, 0

    def close(self) -> None:
        self.closed += 1


@pytest.mark.timeout(60)
def test_import_loads_no_tensorrt_and_no_cuda():
    code = (
        "import sys, engines.backends.tensorrt_backend, engines.backends.tensorrt_factory, engines.tensorrt;"
        "heavy = [m for m in ('tensorrt', 'tensorrt_rtx_bindings', 'cuda', 'torch') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text
    return text


def test_no_cuda_package_is_a_clear_refusal(monkeypatch):
    from engines.backends.cuda_runtime import open_cuda

    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(BackendUnavailable) as info:
        open_cuda(0)
    assert "needs cuda-python" in _one_line(info.value) and "pip install cuda-python" in str(info.value)


def test_cpu_device_and_missing_tensorrt_are_refused(monkeypatch):
    from engines.backends.tensorrt_backend import TensorRTBackend, cuda_index
    from engines.device import BadDevice

    with pytest.raises(BackendUnavailable, match="GPU only"):
        cuda_index("cpu")
    with pytest.raises(BadDevice, match="auto, cpu, cuda or cuda:N"):
        cuda_index("gpu0")
    assert cuda_index("auto") == 0 and cuda_index("cuda:1") == 1 and cuda_index("cuda") == 0
    load_trt.cache_clear()
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx_bindings", None)
    try:
        with pytest.raises(BackendUnavailable) as info:
            TensorRTBackend("x.engine", "cuda:0")
        assert "TensorRT is not installed" in _one_line(info.value)
        with pytest.raises(BackendUnavailable, match="not a TensorRT flavour"):
            load_trt("onnx")
    finally:
        load_trt.cache_clear()


def test_rtx_refuses_hopper_before_touching_the_engine(tmp_path: Path):
    from engines.backends.tensorrt_backend import TensorRTBackend

    assert [rtx_can_run(cc) for cc in ("75", "80", "86", "89", "90", "100", "120", "121")] == [
        False, True, True, True, False, False, True, True]
    cuda = FakeCuda("90", "NVIDIA H100 80GB HBM3")
    with pytest.raises(BackendUnavailable) as info:
        TensorRTBackend(tmp_path / "missing.engine", "cuda:0", api=TrtApi(None, "trtrtx", "1.7.1.116"), cuda=cuda)
    text = _one_line(info.value)
    assert "compute capability 9.0" in text and "NVIDIA H100" in text and "8.0, 8.6, 8.9 or 12.x" in text
    assert cuda.closed == 1  # the context it was handed is released on refusal


@needs.tensorrt
def test_engine_with_missing_or_wrong_json_is_refused_before_deserialising(tmp_path: Path):
    from engines.backends.tensorrt_backend import TensorRTBackend
    from engines.tensorrt.builder import profile_for
    from engines.tensorrt.cache import ensure_engine
    from tests.engines.tensorrt.test_cache import tiny_model

    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    api = load_trt()
    profile = profile_for(onnx_path, "embedder", max_batch=2)
    record = ensure_engine(onnx_path, "tiny", "fp32", "86" if api.is_rtx else None, profile, tmp_path)
    gpu = record.sm
    other_gpu = "89" if gpu != "89" else "86"

    with pytest.raises(BackendUnavailable, match=f"is for sm{gpu}, this GPU is sm{other_gpu}"):
        TensorRTBackend(record.path, api=api, cuda=FakeCuda(other_gpu))

    with pytest.raises(BackendUnavailable, match="shape profile changed"):
        TensorRTBackend(record.path, api=api, cuda=FakeCuda(gpu), expected={"profile": {"x": {}}})
    with pytest.raises(BackendUnavailable, match="built by trt"):
        other = TrtApi(api.module, "trt" if api.is_rtx else "trtrtx", api.version)
        TensorRTBackend(record.path, api=other, cuda=FakeCuda(gpu))
    record.meta_path.unlink()
    cuda = FakeCuda(gpu)
    with pytest.raises(BackendUnavailable) as info:
        TensorRTBackend(record.path, api=api, cuda=cuda)
    assert "JSON is missing" in _one_line(info.value) and cuda.closed == 1


@needs.tensorrt
@needs.no_tensorrt_gpu
def test_a_good_engine_gets_as_far_as_the_tensorrt_runtime(tmp_path: Path):
    """With a valid engine and JSON, the refusal comes from TensorRT itself (no GPU driver here)."""
    from engines.backends.tensorrt_backend import TensorRTBackend
    from engines.tensorrt.builder import profile_for
    from engines.tensorrt.cache import ensure_engine
    from tests.engines.tensorrt.test_cache import tiny_model

    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    record = ensure_engine(onnx_path, "tiny", "fp32", None, profile_for(onnx_path, "embedder", max_batch=2), tmp_path)
    api = load_trt()
    with pytest.raises(BackendUnavailable) as info:
        TensorRTBackend(record.path, api=api, cuda=FakeCuda("86" if api.is_rtx else record.sm),
                        expected={"onnx_sha256": record.onnx_sha256, "profile": record.profile.to_json()})
    print(info.value)
    assert "tiny-fp32" in _one_line(info.value) and "TensorRT" in str(info.value)


@pytest.mark.timeout(120)
def test_registry_falls_back_to_onnxruntime_with_one_warning(checkpoint_dir: Path):
    from engines.backends.registry import create_backend
    from engines.errors import EngineError
    from engines.model_zoo import get_info

    warnings: list[str] = []
    backend = create_backend(get_info("w600k_mbf"), "tensorrt", checkpoint_dir, device="auto", precision="fp16",
                             warn=warnings.append)
    try:
        assert backend.name != "tensorrt"
        assert len(warnings) == 1 and warnings[0].startswith("w600k_mbf: tensorrt: ")
        out = backend.run(np.zeros((2, 3, 112, 112), np.float32))
        assert out[0].shape == (2, 512)
    finally:
        backend.close()
    with pytest.raises(EngineError, match="STRICT_GPU=true"):
        create_backend(get_info("w600k_mbf"), "tensorrt", checkpoint_dir, device="auto", strict_gpu=True)
