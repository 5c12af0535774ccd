"""ArcFace adapter: preprocessing layout and values, batching, normalisation, and the torch-free CPU path."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from engines.backends.base import Backend
from engines.recognizers.arcface import ArcFace
from tests.conftest import REPO
from tests.engines.recognizers import aligned_people


class ProjectionBackend(Backend):
    """A stand-in model: a fixed random projection of the input, recording the batch sizes it is given."""

    name = "fake"

    def __init__(self, max_batch: int | None = None, dim: int = 512) -> None:
        self.max_batch = max_batch
        self.weights = np.random.default_rng(0).normal(size=(3 * 112 * 112, dim)).astype(np.float32)
        self.calls: list[int] = []

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        assert batch.dtype == np.float32 and batch.shape[1:] == (3, 112, 112)
        self.calls.append(len(batch))
        return [batch.reshape(len(batch), -1) @ self.weights]


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def test_preprocess_layout_and_values():
    crops = _crops(2)
    crops[0, 5, 7] = (0, 128, 255)  # B, G, R
    out = ArcFace.preprocess(crops)
    assert out.shape == (2, 3, 112, 112) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out[0, :, 5, 7], [1.0, 0.5 / 127.5, -1.0], atol=1e-7)  # R, G, B
    for n in range(2):
        for c in range(3):
            expected = (crops[n, :, :, 2 - c].astype(np.float64) - 127.5) / 127.5
            np.testing.assert_allclose(out[n, c], expected, atol=1e-6)


def test_embed_chunks_by_batch_size_and_backend_limit():
    crops = _crops(23)
    for batch_size, max_batch, calls in [(8, None, [8, 8, 7]), (32, 5, [5, 5, 5, 5, 3]), (64, None, [23])]:
        backend = ProjectionBackend(max_batch)
        out = ArcFace(backend, batch_size=batch_size).embed(crops)
        assert backend.calls == calls
        assert out.shape == (23, 512) and out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
        raw = ArcFace.preprocess(crops).reshape(23, -1) @ backend.weights
        np.testing.assert_allclose(out, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)


def test_empty_and_single_crop():
    backend = ProjectionBackend()
    arc = ArcFace(backend)
    empty = arc.embed(np.zeros((0, 112, 112, 3), np.uint8))
    assert empty.shape == (0, 512) and empty.dtype == np.float32 and backend.calls == []
    one = _crops(1)
    np.testing.assert_allclose(arc.embed(one[0]), arc.embed(one), atol=1e-6)


def test_bad_input_is_refused():
    arc = ArcFace(ProjectionBackend())
    with pytest.raises(ValueError, match="uint8"):
        arc.embed(np.zeros((2, 112, 112, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        arc.embed(np.zeros((2, 112, 112), np.uint8))
    with pytest.raises(ValueError):
        ArcFace(ProjectionBackend(), batch_size=0)


@pytest.mark.timeout(120)
def test_real_model_batch_size_does_not_change_embeddings(media_dir, checkpoint_dir):
    from engines.backends.onnxruntime_backend import OnnxRuntimeBackend

    crops = aligned_people(media_dir, checkpoint_dir)
    backend = OnnxRuntimeBackend(checkpoint_dir / "w600k_mbf.onnx")
    big = ArcFace(backend, batch_size=64).embed(crops)
    small = ArcFace(backend, batch_size=3).embed(crops)
    np.testing.assert_allclose(big, small, atol=1e-5)
    # each crop's embedding stays with it (a reversed batch gives reversed rows, not a mix)
    np.testing.assert_allclose(ArcFace(backend, batch_size=5).embed(crops[::-1]), big[::-1], atol=1e-5)
    assert np.abs(big[0] - big[1]).max() > 0.01


@pytest.mark.timeout(120)
def test_cpu_onnx_path_runs_without_torch(checkpoint_dir):
    """In a fresh interpreter where ``import torch`` fails, the adapter still embeds on ONNX Runtime."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now raises ImportError
        import numpy as np
        from engines.backends.onnxruntime_backend import OnnxRuntimeBackend
        from engines.recognizers.arcface import ArcFace
        arc = ArcFace(OnnxRuntimeBackend({str(checkpoint_dir / "w600k_mbf.onnx")!r}))
        out = arc.embed(np.full((2, 112, 112, 3), 128, np.uint8))
        assert out.shape == (2, 512) and abs(float(np.linalg.norm(out[0])) - 1) < 1e-5
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
