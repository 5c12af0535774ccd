"""The fallback chain: a backend that cannot run here hands over to the next with one warning line; with no
CUDA GPU at all, the next is the CPU default (onnxruntime on the CPU), not another GPU backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.backends import registry
from engines.errors import BackendUnavailable, EngineError, NoCudaGpu
from engines.model_zoo import get_info
from tests import needs


class Made:
    def __init__(self, name: str, device: str) -> None:
        self.name, self.device = name, device
        self.on_gpu = device.startswith("cuda")

    def describe(self) -> str:
        return f"{self.name}[{self.device}]"

    def close(self) -> None:
        pass


@pytest.fixture
def fakes(monkeypatch):
    """Fake factories: ``fail[name]`` is what that backend raises; every call is recorded."""
    calls: list[tuple[str, str]] = []
    fail: dict[str, Exception] = {}

    def factory(name: str):
        def create(info, checkpoint_dir, device="auto", precision="fp32", **opts):
            calls.append((name, device))
            if name in fail:
                raise fail[name]
            return Made(name, "cpu" if device in ("auto", "cpu") else device)
        return create

    monkeypatch.setattr(registry, "_factory", factory)
    return calls, fail


def test_no_gpu_goes_straight_to_the_cpu_default(fakes):
    calls, fail = fakes
    fail["tensorrt"] = NoCudaGpu("this machine has no CUDA GPU (TensorRT runs on NVIDIA GPUs only)")
    warnings: list[str] = []
    made = registry.create_backend(get_info("w600k_mbf"), "tensorrt", device="cuda", warn=warnings.append)
    assert made.describe() == "onnxruntime[cpu]"
    assert calls == [("tensorrt", "cuda"), ("onnxruntime", "cpu")]  # pytorch is never tried
    assert warnings == ["w600k_mbf: tensorrt: this machine has no CUDA GPU (TensorRT runs on NVIDIA GPUs only) — "
                        "using onnxruntime[cpu] instead"]


def test_other_refusals_still_try_the_next_backend(fakes):
    calls, fail = fakes
    fail["tensorrt"] = BackendUnavailable("no TensorRT engine for w600k_mbf: the build failed")
    made = registry.create_backend(get_info("w600k_mbf"), "tensorrt", device="cuda:0", warn=lambda line: None)
    assert made.name == "pytorch" and calls == [("tensorrt", "cuda:0"), ("pytorch", "cuda:0")]


def test_strict_gpu_turns_no_gpu_into_an_error(fakes):
    _, fail = fakes
    fail["tensorrt"] = NoCudaGpu("this machine has no CUDA GPU")
    with pytest.raises(EngineError, match="STRICT_GPU=true and w600k_mbf cannot run on tensorrt: this machine"):
        registry.create_backend(get_info("w600k_mbf"), "tensorrt", strict_gpu=True)


@pytest.mark.timeout(120)
@needs.no_cuda_gpu
def test_tensorrt_here_without_a_gpu_runs_on_onnxruntime_and_never_asks_for_cuda_python(checkpoint_dir: Path):
    warnings: list[str] = []
    made = registry.create_backend(get_info("w600k_mbf"), "tensorrt", checkpoint_dir, device="auto",
                                   precision="fp16", warn=warnings.append)
    try:
        assert made.describe() == "onnxruntime[cpu,fp32]"
        assert len(warnings) == 1 and "no CUDA GPU" in warnings[0] and "cuda-python" not in warnings[0]
        assert made.run(np.zeros((1, 3, 112, 112), np.float32))[0].shape == (1, 512)
    finally:
        made.close()
