"""Gallery tests: the real qdrant-edge engine and qdrant-client's local mode, no mocks."""

from __future__ import annotations

import numpy as np


def unit(rng: np.random.Generator, n: int, dim: int = 512) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def near(v: np.ndarray, rng: np.random.Generator, noise: float = 0.5) -> np.ndarray:
    """A noisy copy with cosine ~0.9 to ``v`` (noise of norm ``noise`` against a unit vector)."""
    e = rng.standard_normal(v.shape).astype(np.float32)
    e *= noise / np.linalg.norm(e, axis=-1, keepdims=True)
    return (v + e).astype(np.float32)
