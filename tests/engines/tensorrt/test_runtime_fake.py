"""The TensorRT backend's CUDA binding and buffers, driven by a fake CUDA runtime and a fake engine.

No TensorRT engine executes on the machines this project reaches (docs/gpu.md): these tests check the layer
between TensorRT and CUDA — allocation once, copy directions and sizes, the stream, the thread's device, output
order, batch splitting, every buffer freed — with ``tests.engines.tensorrt.fakes`` injected for cuda-python's
runtime module and for ``tensorrt``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from engines.backends.cuda_runtime import CudaRuntime, open_cuda
from engines.backends.tensorrt_backend import TensorRTBackend
from engines.errors import BackendUnavailable, EngineError
from tests.engines.tensorrt.fakes import (
    ITEM,
    MAX_BATCH,
    CudaError,
    FakeCudart,
    MemcpyKind,
    expected_outputs,
    fake_api,
    write_engine,
)


def _backend(tmp_path: Path, cudart: FakeCudart, **kwargs) -> TensorRTBackend:
    return TensorRTBackend(write_engine(tmp_path), "cuda:0", api=fake_api(cudart), cuda=open_cuda(0, cudart), **kwargs)


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *ITEM)).astype(np.float32)


def test_the_runtime_reads_the_device_and_owns_one_stream():
    cudart = FakeCudart(devices=2, cc=(8, 9), name=b"Fake L40")
    cuda = CudaRuntime(1, cudart)
    assert (cuda.cc, cuda.gpu_name, cuda.index) == ("89", "Fake L40", 1)
    assert cudart.streams == {cuda.stream} and cudart.current[threading.get_ident()] == 1
    cuda.close()
    cuda.close()
    assert cudart.streams == set()


@pytest.mark.parametrize(("cudart", "message"), [
    (FakeCudart(devices=1), "no CUDA device 3 (the CUDA runtime sees 1)"),
    (FakeCudart(fail={"cudaGetDeviceCount": CudaError.cudaErrorInsufficientDriver}),
     "CUDA cudaGetDeviceCount failed (cudaErrorInsufficientDriver)"),
])
def test_no_usable_device_is_one_line(cudart: FakeCudart, message: str):
    with pytest.raises(BackendUnavailable) as info:
        open_cuda(3, cudart)
    assert str(info.value) == message


def test_a_batch_goes_through_pinned_memory_and_comes_back_in_onnx_order(tmp_path: Path):
    cudart = FakeCudart()
    backend = _backend(tmp_path, cudart)
    held = cudart.allocations()
    assert held == 6  # one pinned and one device buffer for each of the 3 tensors
    for n in (3, 1, MAX_BATCH):
        batch = _batch(n, seed=n)
        cudart.copies.clear()
        out = backend.run(batch)
        for got, want in zip(out, expected_outputs(batch), strict=True):
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-6)
        item = int(np.prod(ITEM)) * 4
        assert cudart.copies == [(MemcpyKind.cudaMemcpyHostToDevice, n * item, backend._cuda.stream),
                                 (MemcpyKind.cudaMemcpyDeviceToHost, n * 4, backend._cuda.stream),
                                 (MemcpyKind.cudaMemcpyDeviceToHost, n * 8 * 4, backend._cuda.stream)]
    assert cudart.allocations() == held  # nothing allocated per call
    assert cudart.syncs == 3
    backend.close()


def test_results_are_copies_that_the_next_call_does_not_overwrite(tmp_path: Path):
    backend = _backend(tmp_path, FakeCudart())
    first = backend.run(_batch(2, seed=1))
    backend.run(_batch(2, seed=2))
    np.testing.assert_allclose(first[0], expected_outputs(_batch(2, seed=1))[0], rtol=1e-6)
    backend.close()


def test_a_batch_over_the_profile_is_split_and_a_wrong_shape_refused(tmp_path: Path):
    cudart = FakeCudart()
    backend = _backend(tmp_path, cudart)
    batch = _batch(2 * MAX_BATCH + 1)
    out = backend.run(batch)
    np.testing.assert_allclose(out[1], expected_outputs(batch)[1], rtol=1e-6)
    assert len(backend.context.launches) == 3
    with pytest.raises(EngineError) as info:
        backend.run(np.zeros((1, 3, 8, 8), np.float32))
    assert "takes 1x3x4x4 to 4x3x4x4, got a batch of 1x3x8x8" in str(info.value)
    assert "\n" not in str(info.value)
    backend.close()


@pytest.mark.timeout(30)
def test_a_call_from_another_thread_makes_the_device_current_there(tmp_path: Path):
    cudart = FakeCudart(devices=2)
    backend = TensorRTBackend(write_engine(tmp_path), "cuda:1", api=fake_api(cudart, device=1),
                              cuda=open_cuda(1, cudart))
    batch, found = _batch(2), []
    worker = threading.Thread(target=lambda: found.append(backend.run(batch)))
    worker.start()
    worker.join(20)
    assert found and cudart.current[worker.ident] == 1
    np.testing.assert_allclose(found[0][0], expected_outputs(batch)[0], rtol=1e-6)
    backend.close()


def test_close_frees_every_buffer_and_the_stream(tmp_path: Path):
    cudart = FakeCudart()
    backend = _backend(tmp_path, cudart)
    backend.run(_batch(1))
    backend.close()
    backend.close()
    assert cudart.allocations() == 0 and cudart.streams == set()
    with pytest.raises(EngineError, match="closed"):
        backend.run(_batch(1))


def test_a_failed_allocation_is_one_line_and_leaks_nothing(tmp_path: Path):
    cudart = FakeCudart(fail={"cudaMallocHost": CudaError.cudaErrorMemoryAllocation})
    with pytest.raises(BackendUnavailable) as info:
        _backend(tmp_path, cudart)
    assert str(info.value) == "CUDA cudaMallocHost failed (cudaErrorMemoryAllocation)"
    assert cudart.allocations() == 0 and cudart.streams == set()


def test_an_engine_for_another_gpu_or_bytes_tensorrt_cannot_load_are_refused(tmp_path: Path):
    cudart = FakeCudart(cc=(8, 6))
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(BackendUnavailable, match="is for sm89, this GPU is sm86"):
        TensorRTBackend(write_engine(other, sm="89"), api=fake_api(cudart), cuda=open_cuda(0, cudart))
    path = write_engine(tmp_path)
    path.write_bytes(b"X" * path.stat().st_size)  # same size, other bytes: the JSON's sha256 catches it
    with pytest.raises(BackendUnavailable, match="sha256 differs"):
        TensorRTBackend(path, api=fake_api(cudart), cuda=open_cuda(0, cudart))
    assert cudart.allocations() == 0 and cudart.streams == set()
